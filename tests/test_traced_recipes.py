"""Recipes that name a network we did not write: ``model.family: torchvision:NAME`` or ``model.module``,
checked before any compute; a user's factory is imported only from a recipe; a tiny ResNet-18
evolution runs, resumes and transfers to ResNet-34 under ``python -m scoop -n 2``."""
import json
import os
import re
import subprocess
import sys

import pytest

from conftest import ROOT, tiny_overrides, user_network_module
from learngene_ea.config.loading import load_config
from learngene_ea.config.schema import ConfigError
from learngene_ea.core.learngene import extract_learngene, full_masks, load_learngene
from learngene_ea.core.models import build_model
from learngene_ea.errors import UserError

RECIPE = os.path.join(ROOT, "genomes", "torchvision-resnet18.yaml")


def test_the_shipped_recipe_names_torchvisions_resnet18():
    cfg = load_config(RECIPE)
    assert cfg.model.network == "torchvision:resnet18"
    assert cfg.transfer.descendants == ["torchvision:resnet34"]


def test_keyword_arguments_become_part_of_the_networks_name():
    cfg = load_config(None, ["model.family=torchvision:mobilenet_v2", "model.kwargs={width_mult: 0.5}"])
    assert cfg.model.network == 'torchvision:mobilenet_v2{"width_mult": 0.5}'


@pytest.mark.parametrize("override, message", [
    (["model.family=vgg111"], "'model.family' is 'vgg111' (did you mean 'vgg11'?)"),
    (["model.family=torchvision:resnet18", "model.width=0.5"], "'model.width' scales our families only: set it to 1"),
    (["model.kwargs={width_mult: 0.5}"], "'model.kwargs' go to a torchvision network's or model.module's builder"),
    (["model.module=no_colon_here"], "'model.module' must look like 'package.module:function'"),
    (["model.family=torchvision:resnet18", "model.width=1", "model.kwargs={when: 2020-01-01}"],
     "'model.kwargs' must hold numbers, strings, booleans, lists and mappings only"),
])
def test_a_network_named_wrongly_is_one_sentence(override, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(None, override)


def test_an_unknown_torchvision_network_stops_the_run_before_any_compute(tmp_path):
    run_dir = tmp_path / "run"
    out = subprocess.run([sys.executable, "-m", "learngene_ea.run", "--set", "model.family=torchvision:resnet19",
                          "--set", "model.width=1", "--run-dir", str(run_dir)], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 2, out
    assert "torchvision has no classification network 'resnet19'" in out.stderr + out.stdout
    assert "Traceback" not in out.stderr and not run_dir.exists()


FACTORY = '''
from torch import nn


def small_net(channels=8):
    return nn.Sequential(nn.Conv2d(3, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels), nn.ReLU(),
                         nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, 10))
'''


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    user_network_module(tmp_path, monkeypatch, "lab_nets", FACTORY)
    return tmp_path


def test_a_users_factory_is_imported_only_once_a_recipe_names_it(user_module):
    name = 'module:lab_nets:small_net{"channels": 6}'
    with pytest.raises(UserError, match="imported only when the recipe names it"):
        build_model(name)
    assert "lab_nets" not in sys.modules
    cfg = load_config(None, ["model.module=lab_nets:small_net", "model.kwargs={channels: 6}"])
    assert cfg.model.network == name
    model = build_model(name, num_classes=3, seed=0)
    assert model.spec.group_sizes == {"0": 6, "3": 6} and model.feature_dim == 6


def test_a_learngene_of_a_users_network_is_read_without_importing_it(user_module):
    load_config(None, ["model.module=lab_nets:small_net"])
    model = build_model("module:lab_nets:small_net", num_classes=3, seed=0)
    extract_learngene(model, full_masks(model.spec)).save(user_module / "learngene.pt")
    code = ("import sys; from learngene_ea.core.learngene import load_learngene; "
            f"lg = load_learngene({str(user_module / 'learngene.pt')!r}); "
            "print(lg.family, len(lg.spec.layers), 'lab_nets' in sys.modules)")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(user_module), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert out.stdout.split() == ["module:lab_nets:small_net", "2", "False"], out


def test_a_checkpoint_of_a_network_that_now_traces_differently_is_refused():
    from learngene_ea.ea.state import network_problems

    cfg = load_config(RECIPE)
    payload = {"network": {"family": "torchvision:resnet18", "layers": [], "groups": []}}
    assert "traces into other gene layers" in network_problems(payload, cfg.model, cfg.data.channels)[0]
    plain = load_config(None)
    assert network_problems({"network": None}, plain.model, plain.data.channels) == []


# --- the tiny evolution under SCOOP ----------------------------------------------------------------

TINY = [o for o in tiny_overrides() if not o.startswith("model.width")] + [
    "task.steps=2", "task.batch_size=8", "ea.population_size=2", "ea.elites=1", "fitness.episodes=2",
    "pool.warm_start_fraction=0.25", "transfer.episodes=2", "transfer.steps=2", "transfer.shots=[1]",
    "transfer.n_query=3", "transfer.limited_data=0", "transfer.pretrain_epochs=1"]


def _scoop(module, *args):
    command = [sys.executable, "-m", "scoop", "-n", "2", "-m", module, "--config", RECIPE, "--quiet", *args]
    for item in TINY:
        command += ["--set", item]
    out = subprocess.run(command, capture_output=True, text=True, timeout=400, cwd=ROOT)
    assert out.returncode == 0, (out.stdout[-3000:], out.stderr[-5000:])
    assert "Traceback" not in out.stdout + out.stderr
    return out


@pytest.mark.slow
def test_a_tiny_resnet18_evolution_runs_resumes_and_transfers_to_resnet34_under_scoop(tmp_path):
    run_dir = tmp_path / "run"
    _scoop("learngene_ea.run", "--run-dir", str(run_dir), "--set", "ea.generations=1")
    _scoop("learngene_ea.run", "--resume", str(run_dir), "--set", "ea.generations=2")
    with open(run_dir / "logbook.jsonl", encoding="utf-8") as f:
        assert [json.loads(line)["gen"] for line in f] == [0, 1, 2]
    learngene = load_learngene(run_dir / "learngene.pt")
    assert learngene.family == "torchvision:resnet18" and learngene.network is not None
    _scoop("learngene_ea.transfer", "--learngene", str(run_dir / "learngene.pt"), "--out", str(tmp_path / "t"))
    with open(tmp_path / "t" / "transfer.json", encoding="utf-8") as f:
        rows = json.load(f)["rows"]
    assert {(row["method"], row["arch"]) for row in rows} >= {("learngene", "torchvision:resnet18"),
                                                            ("learngene", "torchvision:resnet34")}


def test_a_run_names_what_its_network_left_out_of_the_genome(tmp_path):
    from learngene_ea.api.run import evolve_run

    lines = []
    cfg = load_config(None, [o for o in tiny_overrides() if not o.startswith("model.width")] + [
        "model.family=torchvision:resnext50_32x4d", "ea.generations=0", "ea.population_size=2", "ea.tournsize=2",
        "task.steps=1", "task.batch_size=4", "fitness.episodes=1", "runtime.backend=serial",
        "fitness.rescore_episodes=0"])
    evolve_run(cfg, str(tmp_path / "run"), log=lines.append, quiet=True)
    notes = [line for line in lines if line.startswith("note: ")]
    assert "note: layer1.0.conv2: a grouped convolution (32 groups), left out of the genome (fresh in descendants)" in notes
    assert len(notes) == 16  # the grouped conv2 of each of the 16 bottlenecks


def test_a_state_dict_as_torchvision_saves_it_is_a_pretrained_network(tmp_path):
    import torch
    import torchvision

    from learngene_ea.transfer.pretrain import given_pretrained

    trained = torchvision.models.resnet18(num_classes=7)
    torch.save(trained.state_dict(), tmp_path / "resnet18.pt")
    model, _ = given_pretrained(str(tmp_path / "resnet18.pt"), "torchvision:resnet18", 1.0, 3, "cpu")
    assert torch.equal(model.gene_module("layer3.1.conv2").conv.weight, trained.layer3[1].conv2.weight)
    assert torch.equal(model.gene_module("layer3.1.conv2").bn.running_var, trained.layer3[1].bn2.running_var)
    torch.save(torchvision.models.resnet34().state_dict(), tmp_path / "resnet34.pt")
    with pytest.raises(UserError, match="has 96 tensors a torchvision:resnet18 network reading 3-channel images does not have"):
        given_pretrained(str(tmp_path / "resnet34.pt"), "torchvision:resnet18", 1.0, 3, "cpu")


def test_a_factory_that_fails_to_import_or_to_build_is_one_sentence(user_module):
    (user_module / "broken_nets.py").write_text("raise RuntimeError('no GPU driver here')\n")
    (user_module / "picky_nets.py").write_text("def net(depth=3):\n    raise ValueError(f'depth {depth} is odd')\n")
    load_config(None, ["model.module=broken_nets:net"])
    with pytest.raises(UserError, match=r"'broken_nets:net' cannot be imported \(RuntimeError: no GPU driver here\)"):
        build_model("module:broken_nets:net")
    load_config(None, ["model.module=picky_nets:net"])
    with pytest.raises(UserError, match=r"module:picky_nets:net\(\*\*\{\}\) raised ValueError: depth 3 is odd"):
        build_model("module:picky_nets:net")
