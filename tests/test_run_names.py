"""What a run is called and what it says: recipe and dataset in names and titles, caps, failed starts."""
from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT, tiny_overrides
from learngene_ea.api.run import new_run_dir
from learngene_ea.cli import run as run_cli
from learngene_ea import transfer
from learngene_ea.config.loading import load_config
from learngene_ea.core.learngene import load_learngene
from learngene_ea.reports.files import plural
from learngene_ea.transfer.report import markdown_table

DEFAULT_RECIPE = os.path.join(ROOT, "genomes", "default.yaml")


def sets(**extra):
    extra = {"ea.generations": 0, "fitness.rescore_episodes": 0, **extra}
    return [a for o in tiny_overrides(**extra) for a in ("--set", o)]


def class_folders(root, classes=10, per_class=4):
    """``classes`` folders of ``per_class`` small grey PNG images each."""
    rng = np.random.default_rng(0)
    for c in range(classes):
        os.makedirs(os.path.join(root, f"c{c}"))
        for i in range(per_class):
            pixels = rng.integers(0, 255, (12, 12), dtype=np.uint8)
            Image.fromarray(pixels).save(os.path.join(root, f"c{c}", f"{i}.png"))
    return str(root)


@pytest.fixture(scope="module")
def unnamed_run(tmp_path_factory):
    """The default recipe run with no --run-dir, from an empty folder, with a batch larger than a task."""
    folder = tmp_path_factory.mktemp("cwd")
    patch = pytest.MonkeyPatch()
    patch.chdir(folder)
    lines = []
    patch.setattr("builtins.print", lambda *a, **k: lines.append(" ".join(map(str, a))))
    try:
        status = run_cli.main(["--config", DEFAULT_RECIPE, *sets(**{"task.batch_size": 64}), "--quiet"])
    finally:
        patch.undo()
    runs = os.listdir(folder / "runs")
    return {"status": status, "lines": lines, "runs": runs, "dir": folder / "runs" / runs[0]}


def test_a_run_without_a_name_is_called_by_its_recipe_and_dataset(unnamed_run):
    assert unnamed_run["status"] == 0
    assert len(unnamed_run["runs"]) == 1 and re.fullmatch(r"default-synthetic-\d{8}-\d{6}", unnamed_run["runs"][0])


def test_summary_and_learngene_name_the_recipe_and_the_dataset(unnamed_run):
    summary = json.loads((unnamed_run["dir"] / "summary.json").read_text())
    assert summary["title"] == "default on synthetic"
    assert summary["recipe"] == "default" and summary["dataset"] == "synthetic"
    assert load_learngene(unnamed_run["dir"] / "learngene.pt").meta["recipe"] == "default"
    assert any(line.startswith("run directory: runs/default-synthetic-") and "| default: conv4" in line
               for line in unnamed_run["lines"])


def test_a_batch_larger_than_a_task_is_one_warning_and_recorded_in_the_summary(unnamed_run):
    warning = ("warning: 'task.batch_size' is 64 but a task has only 40 images ('task.num_classes' 5 x "
               "'task.images_per_class' 8); each step uses those 40.")
    assert unnamed_run["lines"].count(warning) == 1
    assert json.loads((unnamed_run["dir"] / "summary.json").read_text())["caps"] == [warning]


def test_a_named_run_keeps_its_name_and_an_image_folder_is_called_by_its_folder(tmp_path):
    named = load_config(None, ["name=mine"])
    assert re.fullmatch(r"runs/mine-\d{8}-\d{6}", new_run_dir(named, None, "default"))
    folder = load_config(None, ["data.name=imagefolder", f"data.root={tmp_path / 'omniglot'}"])
    assert re.fullmatch(r"runs/default-omniglot-\d{8}-\d{6}", new_run_dir(folder, None, "default"))
    assert new_run_dir(folder, str(tmp_path / "here"), "default") == str(tmp_path / "here")  # --run-dir
    assert load_config(None).name is None  # not set unless a recipe sets it


def test_no_shipped_recipe_sets_a_name_that_would_hide_its_dataset():
    for name in os.listdir(os.path.join(ROOT, "genomes")):
        assert load_config(os.path.join(ROOT, "genomes", name)).name is None, name


def test_a_dataset_that_cannot_load_leaves_nothing_and_starts_no_progress_bar(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = ["--config", DEFAULT_RECIPE, *sets(), "--set", "data.name=imagefolder", "--set", "data.root=missing"]
    assert run_cli.main(argv) == 2  # not --quiet: a progress bar would show on stderr
    err = capsys.readouterr().err
    assert err.strip().splitlines() == ["error: data.root 'missing' does not exist or is not a folder; set data.root "
                                        "to the folder holding one sub-folder of images per class."]
    assert os.listdir(tmp_path) == []


def test_a_split_by_counts_names_each_count_the_user_wrote(tmp_path, capsys, monkeypatch):
    root = class_folders(tmp_path / "images")
    monkeypatch.chdir(tmp_path)
    argv = ["--config", DEFAULT_RECIPE, *sets(), "--set", "data.name=imagefolder", "--set", f"data.root={root}",
            "--set", "data.split={train: 80, val: 21, test: 30}", "--quiet"]
    assert run_cli.main(argv) == 2
    assert capsys.readouterr().err.strip() == (
        "error: data.split.train asks for 80 classes, data.split.val for 21 and data.split.test for 30 (131 in all), "
        "but data.root has only 10 classes; lower the counts.")
    assert sorted(os.listdir(tmp_path)) == ["images"]


def test_counts_in_logs_and_tables_are_pluralised(tiny_dataset, tmp_path):
    assert [plural(1, "epoch"), plural(3, "epoch"), plural(1, "query", "queries")] == ["1 epoch", "3 epochs",
                                                                                        "1 query"]
    logs = []
    cfg = load_config(None, tiny_overrides(**{"transfer.pretrain_images": 16, "runtime.device": "cpu"}))
    transfer.load_or_pretrain(cfg, tiny_dataset, transfer.Arch("conv4", 0.25, 3), str(tmp_path), "cpu", logs.append)
    assert "for 1 step (16 images" in logs[0] and "1 steps" not in " ".join(logs)
    results = {"settings": [], "rows": [], "dataset": {"name": "synthetic", "test_classes": 20},
               "learngene": {"family": "conv4", "width": 0.25, "num_params": 10, "fraction": 0.5, "meta": {}},
               "evaluation": {"episodes": 1, "n_query": 1, "steps": 1, "optimizer": "sgd", "lr": 0.01,
                              "augment": False}}
    assert "1 episode per setting, 1 query per class; fine-tuning 1 step of sgd" in markdown_table(results)


def test_an_end_of_run_transfer_target_that_cannot_load_stops_the_run_before_any_folder(tmp_path, capsys,
                                                                                        monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = ["--config", DEFAULT_RECIPE, *sets(**{"transfer.after_run": "true"}), "--set",
            "transfer.target={name: imagefolder, root: missing}", "--quiet"]
    assert run_cli.main(argv) == 2
    assert "transfer.target.root 'missing' does not exist" in capsys.readouterr().err
    assert os.listdir(tmp_path) == []
