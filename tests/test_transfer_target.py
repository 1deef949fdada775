"""Transfer across datasets: a learngene evolved on one dataset, tested on the classes of another."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from conftest import tiny_overrides
from learngene_ea import transfer
from learngene_ea.cli.transfer import main as transfer_main
from learngene_ea.config.loading import load_config, save_config, to_dict
from learngene_ea.config.schema import DataConfig
from learngene_ea.data import load_dataset
from learngene_ea.errors import UserError
from learngene_ea.core.learngene import extract_learngene
from learngene_ea.core.models import build_model
from learngene_ea.transfer.target import image_differences, match_channels, with_resolved_augment

# the smallest transfer that still has every row: one 1-shot episode, one fine-tuning step
QUICK = {"transfer.episodes": 1, "transfer.steps": 1, "transfer.shots": "[1]", "transfer.limited_data": 0,
         "transfer.n_query": 2, "transfer.pretrain_epochs": 1, "task.batch_size": 64, "runtime.device": "cpu"}


def quick_overrides(**extra):
    return tiny_overrides() + [f"{k}={v}" for k, v in {**QUICK, **extra}.items()]


def sets(**extra):
    return [a for o in [f"{k}={v}" for k, v in {**QUICK, **extra}.items()] for a in ("--set", o)]


def image_folder(root, classes=6, per_class=4, mode="L", size=16, seed=0):
    """``root/<class>/<i>.png``: ``classes`` folders of ``per_class`` grey (``L``) or ``RGB`` images."""
    rng = np.random.default_rng(seed)
    for c in range(classes):
        os.makedirs(os.path.join(root, f"class_{c:02d}"), exist_ok=True)
        for i in range(per_class):
            shape = (size, size) if mode == "L" else (size, size, 3)
            pixels = np.clip(rng.normal(40 * c, 30, size=shape), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(os.path.join(root, f"class_{c:02d}", f"{i}.png"))
    return str(root)


def files_and_hashes(folder) -> dict[str, str]:
    """Every file under ``folder`` (relative path) with the SHA-256 of its bytes."""
    found = {}
    for parent, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(parent, name)
            with open(path, "rb") as f:
                found[os.path.relpath(path, folder)] = hashlib.sha256(f.read()).hexdigest()
    return found


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    """A finished run's folder as a run leaves it: learngene.pt (evolved on the tiny synthetic dataset),
    config.yaml, and its own transfer reports with their cached pre-trained network."""
    folder = tmp_path_factory.mktemp("run")
    cfg = load_config(None, quick_overrides())
    save_config(cfg, folder / "config.yaml")
    dataset = load_dataset(cfg.data)
    model = build_model("conv4", 0.25, 3, 5, seed=1)
    masks = {group: np.arange(size) < size // 2 for group, size in model.spec.groups}
    learngene = extract_learngene(model, masks, meta={
        "dataset": "synthetic", "recipe": "default", "training_images": 128, "data": dataclasses.asdict(cfg.data),
        "classes": {s: [dataset.class_names[i] for i in dataset.splits[s]] for s in ("train", "val")}})
    learngene.save(folder / "learngene.pt")
    assert transfer_main(["--learngene", str(folder / "learngene.pt"), "--quiet"]) == 0
    return folder


@pytest.fixture(scope="module")
def grey_digits(tmp_path_factory):
    """A folder of 6 class folders of grey images, with no split: the target of the cross-domain tests."""
    return image_folder(tmp_path_factory.mktemp("images") / "digits")


@pytest.fixture(scope="module")
def cross_domain(run_folder, grey_digits):
    """The documented command on the run folder, with no --out: what it printed, wrote and left alone."""
    before = files_and_hashes(run_folder)
    argv = ["--learngene", str(run_folder / "learngene.pt"), "--set", "transfer.target.name=imagefolder",
            "--set", f"transfer.target.root={grey_digits}", "--quiet"]
    lines = []
    patch = pytest.MonkeyPatch()
    patch.setattr("builtins.print", lambda *a, **k: lines.append(" ".join(map(str, a))))
    try:
        status = transfer_main(argv)
    finally:
        patch.undo()
    out = run_folder / "transfer-digits"
    return {"status": status, "lines": lines, "before": before, "out": out,
            "results": json.loads((out / "transfer.json").read_text()) if status == 0 else None}


# ------------------------------------------------------------------ the cross-domain command

def test_the_documented_cross_domain_command_works_on_a_folder_of_class_folders(cross_domain):
    assert cross_domain["status"] == 0, cross_domain["lines"]
    assert {"transfer.json", "transfer.md", "transfer.png"} <= set(os.listdir(cross_domain["out"]))


def test_it_leaves_every_file_of_the_run_folder_untouched(cross_domain, run_folder):
    after = files_and_hashes(run_folder)
    own = {path: digest for path, digest in after.items() if not path.startswith("transfer-digits" + os.sep)}
    assert own == cross_domain["before"]


def test_every_target_class_is_a_test_class_and_transfer_json_names_them(cross_domain):
    target = cross_domain["results"]["target"]
    assert target["name"] == "imagefolder" and target["root"].endswith("digits")
    assert target["found_in"] == "transfer.target"
    assert target["test_classes"] == 6 and target["train_classes"] == 0
    assert target["test_class_names"] == [f"class_{c:02d}" for c in range(6)]
    episode_classes = {c for s in cross_domain["results"]["settings"] for e in s["episodes"] for c in e["classes"]}
    assert episode_classes <= set(range(6))


def test_the_baselines_are_pretrained_on_the_source_and_reuse_the_runs_own_cache(cross_domain, run_folder):
    results = cross_domain["results"]
    assert results["source"]["name"] == "synthetic"
    assert results["source"]["found_in"] == "recorded in the learngene file"
    assert results["source"]["train_classes"] == 64
    pretrained = results["pretrained"]
    assert pretrained["trained_on"] == "source" and pretrained["classes"] == 64
    assert pretrained["reused"] and os.path.dirname(pretrained["path"]) == str(run_folder)  # read, never written


def test_images_that_differ_from_the_source_are_said_in_one_line_and_channels_converted(cross_domain):
    notes = [line for line in cross_domain["lines"] if line.startswith("note:")]
    assert len([n for n in notes if "not those the learngene was evolved on" in n]) == 1
    assert any("transfer.target.name 'imagefolder' (source: 'synthetic')" in n for n in notes)
    assert cross_domain["results"]["target"]["channels_converted_to"] is None  # target.channels: 3 (decoded as RGB)


def test_titles_name_the_recipe_the_source_and_the_target(cross_domain):
    md = (cross_domain["out"] / "transfer.md").read_text()
    assert "recipe `default`, evolved on synthetic, tested on digits" in md.splitlines()[0]
    assert "pre-trained baselines trained on the source" in md


# ------------------------------------------------------------------ pre-training choices

def test_pretrain_on_target_trains_on_the_targets_training_classes(run_folder, grey_digits, tmp_path):
    argv = ["--learngene", str(run_folder / "learngene.pt"), "--quiet", "--out", str(tmp_path),
            *sets(**{"transfer.target": f"{{name: imagefolder, root: {grey_digits}, channels: 1, "
                                        "split: {train: 2, test: 4}}", "transfer.pretrain_on": "target",
                     "transfer.n_way": 4})]
    assert transfer_main(argv) == 0
    results = json.loads((tmp_path / "transfer.json").read_text())
    assert results["pretrained"]["trained_on"] == "target" and results["pretrained"]["classes"] == 2
    assert results["target"]["test_classes"] == 4 and results["target"]["train_classes"] == 2
    assert results["target"]["channels_converted_to"] == 3  # target.channels: 1, the learngene reads RGB


def test_pretraining_on_a_target_without_training_classes_is_refused(run_folder, grey_digits, tmp_path, capsys):
    argv = ["--learngene", str(run_folder / "learngene.pt"), "--quiet", "--out", str(tmp_path),
            *sets(**{"transfer.target.name": "imagefolder", "transfer.target.root": grey_digits,
                     "transfer.pretrain_on": "target"})]
    assert transfer_main(argv) == 2
    err = capsys.readouterr().err
    assert "'transfer.pretrain_on' is 'target' but transfer.target has no training classes" in err
    assert "transfer.target.split" in err and os.listdir(tmp_path) == []


def test_a_given_network_replaces_pretraining(run_folder, grey_digits, tmp_path, monkeypatch):
    given = tmp_path / "net.pt"
    torch.save(build_model("conv4", 0.25, 3, 7, seed=3).state_dict(), given)
    monkeypatch.setattr(transfer.pretrain, "pretrain_network", lambda *a, **k: pytest.fail("pre-trained anyway"))
    argv = ["--learngene", str(run_folder / "learngene.pt"), "--quiet", "--out", str(tmp_path / "out"),
            "--pretrained", str(given), *sets(**{"transfer.target.name": "imagefolder",
                                                 "transfer.target.root": grey_digits})]
    assert transfer_main(argv) == 0
    results = json.loads((tmp_path / "out" / "transfer.json").read_text())
    assert results["pretrained"]["trained_on"] == "given" and results["pretrained"]["path"] == str(given)


@pytest.mark.parametrize("family,width,channels,message", [
    ("conv4", 0.5, 3, "its 'blocks.0.conv.weight' is [32, 3, 3, 3], not [16, 3, 3, 3]"),
    ("conv4", 0.25, 1, "its 'blocks.0.conv.weight' is [16, 1, 3, 3], not [16, 3, 3, 3]"),
    ("vgg11", 0.25, 3, "has no 'blocks.0.conv.weight', so it is not a conv4 x0.25 network"),
])
def test_a_given_network_of_another_family_width_or_channels_is_refused_in_one_sentence(
        run_folder, tmp_path, capsys, family, width, channels, message):
    given = tmp_path / "net.pt"
    torch.save(build_model(family, width, channels, 5).state_dict(), given)
    argv = ["--learngene", str(run_folder / "learngene.pt"), "--quiet", "--out", str(tmp_path / "out"),
            "--pretrained", str(given), *sets()]
    assert transfer_main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "model.width 0.25 and 3 image channels" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


def test_the_cache_folder_can_be_set_and_the_runs_cache_is_only_read(run_folder, tmp_path, monkeypatch):
    before = files_and_hashes(run_folder)
    argv = ["--learngene", str(run_folder / "learngene.pt"), "--quiet", "--out", str(tmp_path / "out"),
            *sets(**{"transfer.cache_dir": str(tmp_path / "cache"), "transfer.pretrain_images": 64})]
    assert transfer_main(argv) == 0  # another key (pretrain_images): trained, cached in cache_dir only
    assert [n for n in os.listdir(tmp_path / "cache") if n.startswith("pretrained-")]
    assert not [n for n in os.listdir(tmp_path / "out") if n.startswith("pretrained")]
    assert files_and_hashes(run_folder) == before


# ------------------------------------------------------------------ target data

def test_a_target_split_may_give_only_test_classes(grey_digits):
    dataset = load_dataset(DataConfig(name="imagefolder", root=grey_digits, split={"test": 3}), target=True)
    assert len(dataset.splits["test"]) == 3 and dataset.splits["train"] == dataset.splits["val"] == []
    named = load_dataset(DataConfig(name="imagefolder", root=grey_digits, split={"test": ["class_01"]}), target=True)
    assert named.splits["test"] == [1]


def test_a_synthetic_target_has_every_class_as_a_test_class():
    dataset = load_dataset(DataConfig(images_per_class=30, seed=5), target=True)
    assert len(dataset.splits["test"]) == 100 and dataset.splits["train"] == []


@pytest.mark.parametrize("values,message", [
    ({"split": {"test": ["nope"]}}, "transfer.target.split.test names class 'nope', which is not a class folder "
                                    "of transfer.target.root"),
    ({"split": {"test": 9}}, "transfer.target.split.test asks for 9 classes, but transfer.target.root has only 6"),
    ({"root": "/no/such/folder"}, "transfer.target.root '/no/such/folder' does not exist"),
    ({"channels": 2}, "transfer.target.channels is 2"),
])
def test_target_errors_name_the_users_own_keys(grey_digits, values, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(")):
        load_dataset(DataConfig(**{"name": "imagefolder", "root": grey_digits, **values}), target=True)


def test_an_image_folder_target_needs_a_root():
    with pytest.raises(UserError, match="'transfer.target.root' is required for transfer.target.name 'imagefolder'"):
        load_config(None, ["transfer.target.name=imagefolder"])


def test_grey_becomes_rgb_by_repetition_and_rgb_grey_by_the_luminance_pil_uses(tmp_path):
    root = image_folder(tmp_path / "rgb", classes=3, per_class=2, mode="RGB", size=16)
    rgb = load_dataset(DataConfig(name="imagefolder", root=root, image_size=16, channels=3), target=True)
    grey = load_dataset(DataConfig(name="imagefolder", root=root, image_size=16, channels=1), target=True)
    converted = match_channels(rgb, 1)
    assert converted.channels == 1
    assert (converted.images.int() - grey.images.int()).abs().max() <= 1  # PIL rounds its own way
    back = match_channels(grey, 3)
    assert back.channels == 3 and torch.equal(back.images[:, 0], back.images[:, 2])
    assert torch.equal(back.images[:, 1], grey.images[:, 0]) and match_channels(grey, 1) is grey
    assert back.mean == pytest.approx(grey.mean * 3) and back.std == pytest.approx(grey.std * 3)  # its own statistics
    pixels = converted.images.double() / 255
    assert converted.mean == pytest.approx((pixels.mean().item(),)) and converted.std[0] == pytest.approx(
        pixels.std(unbiased=False).item())


def test_every_difference_that_changes_the_images_is_named():
    source = DataConfig(images_per_class=30)
    assert image_differences(source, DataConfig(images_per_class=30, augment=False), "data") == []
    found = image_differences(source, DataConfig(images_per_class=30, seed=1, image_size=28), "transfer.target")
    assert found == ["transfer.target.image_size 28 (source: 32)", "transfer.target.seed 1 (source: 0)"]
    two_folders = image_differences(DataConfig(name="imagefolder", root="/a/x"),
                                    DataConfig(name="imagefolder", root="/b/x"), "transfer.target")
    assert two_folders == ["transfer.target.root '/b/x' (source: '/a/x')"]


@pytest.mark.parametrize("overrides,augment,key", [
    ([], True, "data.augment"),
    (["data.augment=false"], False, "data.augment"),
    (["transfer.target={name: synthetic, augment: false}"], False, "transfer.target.augment"),
    (["data.augment=false", "transfer.augment=true"], True, "transfer.augment"),
])
def test_transfer_augment_follows_the_augment_of_the_data_fine_tuned_on_unless_set(overrides, augment, key):
    cfg, found = with_resolved_augment(load_config(None, overrides))
    assert cfg.transfer.augment is augment and found == key


def test_transfer_json_records_the_augmentation_used(cross_domain, run_folder):
    assert cross_domain["results"]["evaluation"]["augment"] is True
    assert cross_domain["results"]["evaluation"]["augment_from"] == "transfer.target.augment"
    config = yaml.safe_load((run_folder / "config.yaml").read_text())
    assert config["transfer"]["augment"] is None and to_dict(load_config(None))["transfer"]["augment"] is None


def test_a_target_holding_the_sources_own_classes_is_refused(run_folder, tmp_path, capsys):
    argv = ["--learngene", str(run_folder / "learngene.pt"), "--quiet", "--out", str(tmp_path),
            *sets(**{"transfer.target": "{name: synthetic, images_per_class: 30}"})]
    assert transfer_main(argv) == 2
    err = capsys.readouterr().err
    assert "80 of the 100 test classes ('synth-" in err and "name the test classes in transfer.target.split" in err


def test_the_example_image_folder_is_a_folder_of_class_folders_written_the_same_every_time(tmp_path):
    from bench.make_image_folder import make_image_folder

    names = make_image_folder(str(tmp_path / "a"), classes=3, per_class=2, size=16)
    make_image_folder(str(tmp_path / "b"), classes=3, per_class=2, size=16)
    assert files_and_hashes(tmp_path / "a") == files_and_hashes(tmp_path / "b")
    dataset = load_dataset(DataConfig(name="imagefolder", root=str(tmp_path / "a"), image_size=16, channels=1),
                           target=True)
    assert sorted(dataset.class_names) == sorted(names) and dataset.images.shape == (6, 1, 16, 16)


def test_a_scoop_worker_rebuilds_the_target_as_the_origin_does(grey_digits, monkeypatch):
    """A worker has only the recipe: it must load the target (every class a test class) and convert its
    channels as the origin did, so its episode records are the origin's."""
    import scoop.shared

    target = f"{{name: imagefolder, root: {grey_digits}, channels: 1}}"
    cfg, _ = with_resolved_augment(load_config(None, quick_overrides(**{"transfer.target": target})))
    model = build_model("conv4", 0.25, 3, 5, seed=2)
    learngene = extract_learngene(model, {group: np.arange(size) < 3 for group, size in model.spec.groups})
    dataset = transfer.load_target(cfg, 3)
    assert dataset.channels == 3 and len(dataset.splits["test"]) == 6
    settings = transfer.make_settings(cfg.transfer, dataset)
    methods = transfer.baseline_methods(learngene, None, complement_scale=cfg.transfer.complement_scale)
    sent = {"config": cfg, "learngene": learngene, "descendants": [], "pretrained": None}
    monkeypatch.setattr(scoop.shared, "getConst", lambda name, timeout=0.1: sent if name == "target-test" else None)
    for m, method in enumerate(methods):
        worker = transfer.evaluate_episode_job(("target-test", m, 0, 0))
        origin = transfer.evaluate_episode(method, transfer.Bench(dataset, cfg.transfer, 3, "cpu"), settings[0], 0)
        worker.pop("seconds"), origin.pop("seconds")
        assert worker == origin, method.name


def test_a_source_that_cannot_be_loaded_says_where_it_was_found_and_what_to_do(grey_digits, tmp_path, capsys):
    path = tmp_path / "learngene.pt"
    model = build_model("conv4", 0.25, 3, 5, seed=1)
    extract_learngene(model, {g: np.arange(s) < 4 for g, s in model.spec.groups},
                      meta={"data": {"name": "imagefolder", "root": "/moved/away"}}).save(path)
    argv = ["--learngene", str(path), "--quiet", "--out", str(tmp_path / "out"),
            *sets(**{"transfer.target.name": "imagefolder", "transfer.target.root": grey_digits})]
    assert transfer_main(argv + [a for o in tiny_overrides() for a in ("--set", o)]) == 2  # tiny: conv4 x0.25
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: The source data the pre-trained baseline trains on (recorded in the learngene "
                          "file: imagefolder at '/moved/away') cannot be loaded (data.root '/moved/away' does not")
    assert err.endswith("; pass --pretrained FILE or set transfer.pretrain_on=target.")


def test_a_grey_learngene_is_tested_on_rgb_test_classes_by_luminance(tmp_path, capsys):
    path = tmp_path / "learngene.pt"
    model = build_model("conv4", 0.25, 1, 5, seed=1)
    extract_learngene(model, {g: np.arange(s) < 4 for g, s in model.spec.groups},
                      meta={"dataset": "synthetic"}).save(path)
    argv = ["--learngene", str(path), "--quiet", "--out", str(tmp_path / "out"), "--set", "transfer.pretrain_images=16",
            *sets(), *[a for o in tiny_overrides() for a in ("--set", o)]]
    assert transfer_main(argv) == 0
    out = capsys.readouterr().out
    assert ("note: the learngene reads 1-channel images and data has 3; converting them (luminance 0.299 R + "
            "0.587 G + 0.114 B)\n") in out
    assert json.loads((tmp_path / "out" / "transfer.json").read_text())["target"]["channels_converted_to"] == 1
