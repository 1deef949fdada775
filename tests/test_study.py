"""A study: one recipe, several evolution seeds, each on test episodes of its own, pooled over independent units."""
from __future__ import annotations

import contextlib
import io
import json
import os

import numpy as np
import pytest

from conftest import ROOT, tiny_overrides
from conftest import run_module as run_python
from learngene_ea.api import run as run_module
from learngene_ea.api import study as study_api
from learngene_ea.cli import study
from learngene_ea.config.loading import load_config
from learngene_ea.errors import UserError
from learngene_ea.fewshot.sampling import t_quantile_975
from learngene_ea.reports.study import pool

RECIPE = os.path.join(ROOT, "genomes", "default.yaml")


def study_overrides(**extra):
    """Tiny evolution (tests/conftest.py) + a tiny transfer: 2 episodes of one 1-shot setting, 3 steps."""
    values = {"transfer.episodes": 2, "transfer.steps": 3, "transfer.shots": "[1]", "transfer.limited_data": 0,
              "transfer.n_query": 5, "transfer.pretrain_epochs": 1, "task.batch_size": 64, "runtime.device": "cpu",
              "fitness.rescore_episodes": 5}
    values.update(extra)
    return tiny_overrides() + [f"{k}={v}" for k, v in values.items()]


def study_argv(out, seeds, **extra):
    argv = ["--config", RECIPE, "--out", str(out), "--quiet", "--seeds", *map(str, seeds)]
    for item in study_overrides(**extra):
        argv += ["--set", item]
    return argv


def run_study(argv, interrupt_seed=None):
    """``python -m learngene_ea.study ARGV`` in this process: (status, stdout, evolved seeds, transfers computed).

    ``interrupt_seed``: a kill (KeyboardInterrupt) right after that seed's generation 1 is saved.
    """
    evolved, computed, out = [], [], io.StringIO()
    evolve, transfer_after_run, save = run_module.evolve, study_api.transfer_after_run, run_module.RunOutputs.__call__

    def counting_evolve(cfg, *args, **kwargs):
        evolved.append(cfg.seed)
        return evolve(cfg, *args, **kwargs)

    def counting_transfer(cfg, *args, **kwargs):
        computed.append(cfg.seed)
        return transfer_after_run(cfg, *args, **kwargs)

    def save_then_stop(self, state):
        save(self, state)
        if self.cfg.seed == interrupt_seed and state.generation == 1:
            raise KeyboardInterrupt

    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(out):
        patch.setattr(run_module, "evolve", counting_evolve)
        patch.setattr(study_api, "transfer_after_run", counting_transfer)
        patch.setattr(run_module.RunOutputs, "__call__", save_then_stop)
        status = study.main(argv)
    return status, out.getvalue(), evolved, computed


def read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def episode_accuracies(transfer, method, setting):
    return [row for row in transfer["rows"] if row["method"] == method][0]["results"][setting]["accuracies"]


def without_timings(data):
    return {k: v for k, v in data.items() if k not in ("last_invocation", "runs")}


@pytest.fixture(scope="module")
def study_a(tmp_path_factory):
    """Seeds 0 and 1; every run does its own transfer at its end (transfer.after_run: true)."""
    out = tmp_path_factory.mktemp("study") / "a"
    status, log, evolved, computed = run_study(study_argv(out, [0, 1], **{"transfer.after_run": "true"}))
    assert status == 0, log
    return {"out": out, "log": log, "evolved": evolved, "computed": computed,
            "study": read_json(out / "study.json"),
            "transfers": [read_json(out / f"seed-{s}" / "transfer.json") for s in (0, 1)]}


@pytest.fixture(scope="module")
def study_b(tmp_path_factory):
    """Seed 1 alone; then seeds 0 and 1, stopped after seed 0's generation 1; then continued.

    The study computes the transfers (transfer.after_run: false).
    """
    out = tmp_path_factory.mktemp("study") / "b"
    steps = [run_study(study_argv(out, [1]))]
    alone = read_json(out / "seed-1" / "transfer.json")
    steps.append(run_study(study_argv(out, [0, 1]), interrupt_seed=0))
    unfinished = {"summary": read_json(out / "seed-0" / "summary.json"),
                  "checkpoints": sorted(os.listdir(out / "seed-0" / "checkpoints"))}
    steps.append(run_study(study_argv(out, [0, 1])))
    pretrained = {seed: read_json(out / f"seed-{seed}" / "transfer.json")["pretrained"] for seed in (0, 1)}
    cached = {seed: {n: (out / f"seed-{seed}" / n).read_bytes() for n in os.listdir(out / f"seed-{seed}")
                     if n.startswith("pretrained-")} for seed in (0, 1)}
    same_network = bool(cached[0]) and cached[0] == cached[1]  # one file per key, the same name and bytes
    return {"out": out, "steps": steps, "alone": alone, "unfinished": unfinished, "study": read_json(out / "study.json"),
            "pretrained": pretrained, "same_pretrained_network": same_network}


def test_a_study_writes_study_json_md_png_with_the_documented_fields(study_a):
    data, out = study_a["study"], study_a["out"]
    assert {"study.json", "study.md", "study.png", "study-config.yaml", "seed-0", "seed-1"} <= set(os.listdir(out))
    assert data["seeds"] == [0, 1] and data["settings"] == ["1-shot"]
    assert data["launch"] == {"processes": 1, "threads": 1}
    methods = [row["method"] for row in study_a["transfers"][0]["rows"]]
    assert list(data["rows"]) == methods  # every row of transfer.json, whatever they are
    assert list(data["paired"]) == [f"learngene-{m}" for m in methods if m != "learngene"]
    for cell in (data["rows"]["learngene"]["1-shot"], data["paired"]["learngene-scratch"]["1-shot"]):
        assert 0.0 <= abs(cell["mean"]) <= 1.0 and cell["ci95"] >= 0.0 and cell["episodes"] == 4
        assert [s["seed"] for s in cell["per_seed"]] == [0, 1] and all(s["episodes"] == 2 for s in cell["per_seed"])
    assert {"won", "lost"} <= set(data["paired"]["learngene-scratch"]["1-shot"])
    assert data["recipe"]["path"] == RECIPE and "seed" not in data["recipe"]["config"]
    for seed, run in zip((0, 1), data["runs"]):
        summary = read_json(out / f"seed-{seed}" / "summary.json")
        assert run["seed"] == seed and run["validation"]["accuracy"] == summary["best"]["accuracy"]
        assert run["validation"]["fresh_validation"] == summary["best"]["fresh_validation"]
    md = (out / "study.md").read_text()
    assert "| learngene − scratch | 5-way 1-shot |" in md and "| seed 0 | seed 1 |" in md


def test_every_seed_folder_is_the_finished_run_of_that_seed(study_a):
    for seed in (0, 1):
        folder = study_a["out"] / f"seed-{seed}"
        assert read_json(folder / "summary.json")["finished"] is True
        assert f"\nseed: {seed}\n" in (folder / "config.yaml").read_text()
        assert study_a["transfers"][seed]["learngene"]["meta"]["seed"] == seed
    assert study_a["evolved"] == [0, 1]
    assert study_a["computed"] == []  # the runs' own transfer.json (after_run: true) is reused
    assert "seed 1/2 (seed=0): evolving into" in study_a["log"] and "transfer reused from" in study_a["log"]


def test_pooled_rows_are_over_every_seed_and_episode(study_a):
    for method, row in study_a["study"]["rows"].items():
        per_seed = [episode_accuracies(t, method, "1-shot") for t in study_a["transfers"]]
        pooled = np.concatenate(per_seed)
        assert row["1-shot"]["mean"] == pytest.approx(pooled.mean(), abs=1e-12)
        t = t_quantile_975(pooled.size - 1)
        assert row["1-shot"]["ci95"] == pytest.approx(t * pooled.std(ddof=1) / np.sqrt(pooled.size), abs=1e-12)
        assert (row["1-shot"]["unit"], row["1-shot"]["units"]) == ("seed-episode", 4)
        assert [s["mean"] for s in row["1-shot"]["per_seed"]] == pytest.approx([np.mean(a) for a in per_seed])
        assert [s["accuracies"] for s in row["1-shot"]["per_seed"]] == per_seed  # anyone can recompute it
        means = [np.mean(a) for a in per_seed]
        assert row["1-shot"]["over_seeds"]["ci95"] == pytest.approx(t_quantile_975(1) * np.std(means, ddof=1)
                                                                    / np.sqrt(2), abs=1e-12)


def test_every_seed_is_evaluated_on_test_episodes_of_its_own(study_a):
    first, second = study_a["transfers"]
    assert first["evaluation"]["seed"] != second["evaluation"]["seed"]
    for one, other in zip(first["settings"], second["settings"]):
        assert not {e["digest"] for e in one["episodes"]} & {e["digest"] for e in other["episodes"]}
    assert [r["transfer_seed"] for r in study_a["study"]["runs"]] == [t["evaluation"]["seed"] for t in (first, second)]
    # the baselines too: scratch is trained afresh on each seed's episodes, not copied from one seed
    assert episode_accuracies(first, "scratch", "1-shot") != episode_accuracies(second, "scratch", "1-shot")


def test_paired_differences_are_per_seed_and_episode_pairs(study_a):
    for name, paired in study_a["study"]["paired"].items():
        other = name.removeprefix("learngene-")
        diffs = [np.subtract(episode_accuracies(t, "learngene", "1-shot"), episode_accuracies(t, other, "1-shot"))
                 for t in study_a["transfers"]]
        pooled = np.concatenate(diffs)
        cell = paired["1-shot"]
        assert cell["mean"] == pytest.approx(pooled.mean(), abs=1e-12)
        assert (cell["won"], cell["lost"], cell["episodes"]) == ((pooled > 0).sum(), (pooled < 0).sum(), 4)
        assert [s["won"] for s in cell["per_seed"]] == [int((d > 0).sum()) for d in diffs]


def test_rerunning_a_study_reruns_nothing_and_gives_the_same_numbers(study_a):
    out = study_a["out"]
    mtimes = {p: os.path.getmtime(out / p) for p in ("seed-0/learngene.pt", "seed-1/transfer.json")}
    status, log, evolved, computed = run_study(study_argv(out, [0, 1], **{"transfer.after_run": "true"}))
    assert status == 0 and evolved == [] and computed == []
    assert "seed 2/2 (seed=1): done, reusing" in log
    assert {p: os.path.getmtime(out / p) for p in mtimes} == mtimes
    again = read_json(out / "study.json")
    assert without_timings(again) == without_timings(study_a["study"])
    assert [s["evolution"] for s in again["last_invocation"]["seeds"]] == ["reused", "reused"]


def test_one_seed_alone_gives_that_seeds_numbers_exactly(study_a, study_b):
    status, log, evolved, computed = study_b["steps"][0]
    assert status == 0 and evolved == [1] and computed == [1]
    for row in study_a["transfers"][1]["rows"]:
        assert episode_accuracies(study_b["alone"], row["method"], "1-shot") == row["results"]["1-shot"]["accuracies"]


def test_a_stopped_study_continues_where_it_stopped(study_a, study_b):
    status, log, evolved, computed = study_b["steps"][1]
    assert status == 130 and evolved == [0] and computed == []
    assert "finished" not in study_b["unfinished"]["summary"]
    assert "gen_0001.pkl" in study_b["unfinished"]["checkpoints"]
    assert "gen_0002.pkl" not in study_b["unfinished"]["checkpoints"]
    status, log, evolved, computed = study_b["steps"][2]
    assert status == 0 and evolved == [0] and computed == [0]  # seed 0 resumed, seed 1 kept
    assert "seed 1/2 (seed=0): resuming" in log and "seed 2/2 (seed=1): done, reusing" in log
    # the same numbers as the study that ran straight through (whoever computed the transfers)
    assert study_b["study"]["rows"] == study_a["study"]["rows"]
    assert study_b["study"]["paired"] == study_a["study"]["paired"]


def test_other_transfer_settings_are_evaluated_again(study_b):
    out = study_b["out"]
    status, log, evolved, computed = run_study(study_argv(out, [0, 1], **{"transfer.steps": 4}))
    assert status == 0 and evolved == [] and computed == [0, 1]
    assert read_json(out / "study.json")["transfer"]["steps"] == 4
    assert read_json(out / "seed-0" / "transfer.json")["evaluation"]["steps"] == 4


def test_a_study_on_validation_classes_reuses_the_evolutions_and_never_samples_a_test_class(study_b, tmp_path):
    import shutil

    out = tmp_path / "val"
    shutil.copytree(study_b["out"], out)
    status, log, evolved, computed = run_study(study_argv(out, [0, 1], **{"transfer.classes": "val"}))
    assert status == 0 and evolved == [] and computed == [0, 1]
    transfer = read_json(out / "seed-0" / "transfer.json")
    from learngene_ea.config.loading import load_config
    from learngene_ea.data import load_dataset

    splits = load_dataset(load_config(RECIPE, study_overrides()).data).splits
    classes = {c for setting in transfer["settings"] for e in setting["episodes"] for c in e["classes"]}
    assert classes and classes <= set(splits["val"]) and not classes & set(splits["test"])
    assert "Transfer to validation classes" in (out / "seed-0" / "transfer.md").read_text()
    assert "episodes of validation classes of its own" in (out / "study.md").read_text()


def test_every_seed_pretrains_a_baseline_of_its_own(study_b):
    # a seed's pre-trained network is drawn from its own transfer seed: an independent replicate
    assert not study_b["pretrained"][0]["reused"] and not study_b["pretrained"][1]["reused"]
    assert not study_b["same_pretrained_network"]


@pytest.mark.slow
def test_under_scoop_a_study_gives_the_same_numbers(study_a, tmp_path):
    """``python -m scoop -n 2 -m learngene_ea.study``: exit 0, no traceback, seed 1's numbers of the serial study."""
    out = tmp_path / "scoop"
    done = run_python(["-m", "scoop", "-n", "2", "-m", "learngene_ea.study", *study_argv(out, [1])], cwd=ROOT)
    assert done.returncode == 0 and "Traceback" not in done.stdout + done.stderr, done.stderr[-3000:]
    data = read_json(out / "study.json")
    assert data["launch"]["processes"] == 2
    for row in study_a["transfers"][1]["rows"]:
        per_seed = data["rows"][row["method"]]["1-shot"]["per_seed"]
        assert per_seed == study_a["study"]["rows"][row["method"]]["1-shot"]["per_seed"][1:]
    bad = run_python(["-m", "scoop", "-n", "2", "-m", "learngene_ea.study", "--seeds", "0", "0", "--out",
                      str(tmp_path / "bad")], cwd=ROOT)
    assert bad.returncode == 2 and "error: seed 0 is given twice" in bad.stdout + bad.stderr
    assert not (tmp_path / "bad").exists()


@pytest.mark.slow
def test_on_ray_a_study_gives_the_same_numbers(study_a, tmp_path):
    """``--set runtime.backend=ray``: the evolution and the transfer run as Ray tasks on a local Ray the
    study starts (2 task slots here), with seed 1's numbers of the serial study."""
    ray = pytest.importorskip("ray", reason="Ray is not installed (the [ray] extra: pip install -e \".[ray]\")")
    if ray.is_initialized():
        ray.shutdown()
    out = tmp_path / "ray"
    try:
        status, log, evolved, computed = run_study(study_argv(out, [1], **{"runtime.backend": "ray"}))
    finally:
        ray.shutdown()  # the Ray the study started: no other test should find it
    assert status == 0 and evolved == [1] and computed == [1], log
    assert "spread over 2 Ray processes" in log
    data = read_json(out / "study.json")
    assert data["launch"]["processes"] == 2
    for row in study_a["transfers"][1]["rows"]:
        per_seed = data["rows"][row["method"]]["1-shot"]["per_seed"]
        assert per_seed == study_a["study"]["rows"][row["method"]]["1-shot"]["per_seed"][1:]


@pytest.mark.parametrize("argv, message", [
    (["--config", "no/such/recipe.yaml", "--seeds", "0"], "does not exist"),
    (["--seeds"], "no seeds given"),
    ([], "no seeds given"),
    (["--seeds", "0", "-1"], "seed -1 is negative"),
    (["--seeds", "1", "0", "1"], "seed 1 is given twice"),
    (["--seeds", "0", "x"], "whole numbers"),
    (["--seeds", "0", "--set", "seed=3"], "pass the seeds with --seeds"),
    (["--seeds", "0", "--set", "ea.no_such_key=1"], "no_such_key"),
    (["--seeds", "0", "99999999999999999999"], "seed 99999999999999999999 in --seeds is too large; seeds are whole "
                                               "numbers from 0 to 4294967295"),
    (["--seeds", "0", "--set", "transfer.lr=.nan"], "'transfer.lr' is nan; it must be a finite number"),
    (["--seeds", "0", "--set", "ea.min_channels=64"], "'ea.target_fraction' (0.25) cannot be reached"),
    (["--seeds", "0", "--set", "runtime.device=cuda:x"], "'runtime.device' is 'cuda:x'"),
])
def test_bad_input_exits_2_with_one_sentence_before_any_folder(tmp_path, capsys, argv, message):
    out = tmp_path / "study"
    assert study.main(argv + ["--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1, err
    assert not out.exists()


def test_a_folder_of_another_recipe_is_refused_before_any_compute(study_a, tmp_path, capsys):
    out = study_a["out"]
    before = sorted(os.listdir(out))
    status, _, evolved, _ = run_study(study_argv(out, [0, 5], **{"ea.generations": 3}))
    assert status == 2 and evolved == []
    assert "holds a study of another recipe (ea.generations is 2 there but 3 here)" in capsys.readouterr().err
    assert sorted(os.listdir(out)) == before
    (tmp_path / "notes.txt").write_text("mine")
    assert study.main(study_argv(tmp_path, [0])) == 2
    assert "holds no study" in capsys.readouterr().err


def _fake_transfer(learngene_acc, scratch_acc, other_arch=True, extra_row=False, digests=("a", "b")):
    rows = [{"method": "scratch", "arch": "conv4 x0.5", "fine_tuned": True, "params": 0, "fraction": 0.0,
             "results": {"5-shot": {"accuracies": scratch_acc}}},
            {"method": "learngene", "arch": "conv4 x0.5", "fine_tuned": True, "params": 10, "fraction": 0.2,
             "results": {"5-shot": {"accuracies": learngene_acc}}}]
    if other_arch:
        rows += [{**row, "arch": "conv4 x1", "results": {"5-shot": {"accuracies": [a / 2 for a in
                                                                                   row["results"]["5-shot"]["accuracies"]]}}}
                 for row in rows]
    if extra_row:
        rows.append({**rows[0], "method": "new-baseline"})
    return {"learngene": {"family": "conv4", "width": 0.5},
            "settings": [{"name": "5-shot", "label": "5-way 5-shot", "episodes": [{"digest": d} for d in digests]}],
            "rows": rows}


def test_other_architectures_are_keyed_apart_and_rows_missing_somewhere_are_left_out():
    summary = {"best": {"accuracy": 0.5, "ci95": 0.1, "fresh_validation": {"accuracy": 0.4, "ci95": 0.1}}}
    pooled = pool([3, 7], [_fake_transfer([0.6, 0.8], [0.4, 0.8], extra_row=True),
                           _fake_transfer([0.5, 0.5], [0.6, 0.2], digests=("c", "d"))], [summary, summary])
    assert list(pooled["rows"]) == ["scratch", "learngene", "scratch@conv4 x1", "learngene@conv4 x1"]
    assert pooled["rows_left_out"] == {"new-baseline": [7]}
    assert list(pooled["paired"]) == ["learngene-scratch", "learngene-scratch@conv4 x1"]
    cell = pooled["paired"]["learngene-scratch"]["5-shot"]
    assert cell["mean"] == pytest.approx(np.mean([0.2, 0.0, -0.1, 0.3]))
    assert (cell["won"], cell["lost"], cell["episodes"]) == (2, 1, 4)
    assert pooled["paired"]["learngene-scratch@conv4 x1"]["5-shot"]["mean"] == pytest.approx(cell["mean"] / 2)
    assert pooled["validation"]["fresh"]["mean"] == pytest.approx(0.4)


def test_seeds_that_share_their_episodes_are_pooled_per_episode_not_as_independent_pairs():
    summary = {"best": {"accuracy": 0.5, "ci95": 0.1, "fresh_validation": None}}
    learngene, scratch = [0.6, 0.8, 0.7], [0.4, 0.3, 0.6]
    same = [_fake_transfer(learngene, scratch, other_arch=False, digests=("a", "b", "c")) for _ in range(3)]
    pooled = pool([0, 1, 2], same, [summary] * 3)
    cell = pooled["paired"]["learngene-scratch"]["5-shot"]
    diff = np.subtract(learngene, scratch)
    # three copies of three episodes are three units, not nine: the interval of one seed
    assert (cell["unit"], cell["units"], cell["episodes"]) == ("episode", 3, 3)
    assert cell["ci95"] == pytest.approx(t_quantile_975(2) * diff.std(ddof=1) / np.sqrt(3))
    assert cell["ci95"] == pytest.approx(cell["per_seed"][0]["ci95"])
    row = pooled["rows"]["scratch"]["5-shot"]
    assert row["units"] == 3 and row["ci95"] == pytest.approx(row["per_seed"][0]["ci95"])


def test_a_seed_folder_is_new_resumed_or_kept_by_what_it_holds(tmp_path):
    folder = tmp_path / "seed-0"
    assert study_api.seed_state(str(folder)) == "new"
    (folder / "checkpoints").mkdir(parents=True)
    (folder / "config.yaml").write_text("seed: 0\n")
    (folder / "checkpoints" / ".gen_0000.pkl.x.tmp").write_bytes(b"half")
    assert study_api.seed_state(str(folder)) == "new"  # killed before its first checkpoint: started again
    (folder / "checkpoints" / "gen_0000.pkl").write_bytes(b"x")
    assert study_api.seed_state(str(folder)) == "resume"
    (folder / "summary.json").write_text('{"best": {}}')
    assert study_api.seed_state(str(folder)) == "resume"
    (folder / "summary.json").write_text('{"best": {}, "finished": true}')
    assert study_api.seed_state(str(folder)) == "finished"
    (tmp_path / "seed-1").mkdir()
    (tmp_path / "seed-1" / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="holds files but no run checkpoint"):
        study_api.seed_state(str(tmp_path / "seed-1"))


@pytest.mark.parametrize("make", [lambda p: os.mkfifo(p), lambda p: p.write_text("[1, 2]"),
                                  lambda p: p.write_bytes(b'{"finished": "\xff"}')])
def test_a_summary_that_is_a_fifo_or_no_json_object_leaves_the_seed_to_resume(tmp_path, make):
    folder = tmp_path / "seed-0"
    (folder / "checkpoints").mkdir(parents=True)
    (folder / "checkpoints" / "gen_0000.pkl").write_bytes(b"x")
    make(folder / "summary.json")  # a fifo used to block the open for ever; a list was an AttributeError
    assert study_api.seed_state(str(folder)) == "resume"


def test_a_seed_folder_of_another_seed_or_recipe_is_refused(study_a):
    folder = str(study_a["out"] / "seed-0")
    overrides = study_overrides(**{"transfer.after_run": "true"})
    study_api.check_seed_recipe(folder, 0, load_config(RECIPE, overrides))
    with pytest.raises(UserError, match="seed is 0 there"):
        study_api.check_seed_recipe(folder, 1, load_config(RECIPE, overrides))
    with pytest.raises(UserError, match="task.steps is 4 there but 5 here"):
        study_api.check_seed_recipe(folder, 0, load_config(RECIPE, overrides + ["task.steps=5"]))
