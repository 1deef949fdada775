"""Resuming gives exactly the uninterrupted run; kills, corruption and hostile pickles lose nothing."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from conftest import ROOT, run_module, stopped_after, tiny_overrides
from learngene_ea.cli import run as run_cli
from learngene_ea.io.checkpoint import CheckpointError, load_checkpoint, load_latest_valid

GENERATIONS = 3


def sets(**extra):
    args = []
    for item in tiny_overrides(**{"ea.generations": GENERATIONS, **extra}):
        args += ["--set", item]
    return args


def comparable_logbook(run_dir):
    lines = [json.loads(line) for line in (run_dir / "logbook.jsonl").read_text().splitlines()]
    for line in lines:
        line.pop("seconds")
    return lines


def learngene_tensors(run_dir):
    state = torch.load(run_dir / "learngene.pt", weights_only=True)
    return state["masks"], state["weights"], state["meta"]["id"]


def same_learngene(a, b):
    (ma, wa, ia), (mb, wb, ib) = learngene_tensors(a), learngene_tensors(b)
    return ia == ib and all(torch.equal(ma[g], mb[g]) for g in ma) and all(
        torch.equal(wa[l][k], wb[l][k]) for l in wa for k in wa[l])


def hall_of_fame(run_dir):
    payload = load_checkpoint(run_dir / "checkpoints" / "latest.pkl")
    return [(ind.id, ind.fitness.values) for ind in payload["halloffame"]]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("full") / "run"
    assert run_cli.main([*sets(), "--run-dir", str(run_dir), "--quiet"]) == 0
    return run_dir


@pytest.mark.parametrize("stop_after", [0, 1])
def test_resumed_run_equals_the_uninterrupted_run(uninterrupted, tmp_path, stop_after):
    run_dir = tmp_path / "run"
    with stopped_after(stop_after):  # killed after that generation's checkpoint
        assert run_cli.main([*sets(), "--run-dir", str(run_dir), "--quiet"]) == 130
    assert run_cli.main(["--resume", str(run_dir), "--quiet"]) == 0
    assert comparable_logbook(run_dir) == comparable_logbook(uninterrupted)
    assert hall_of_fame(run_dir) == hall_of_fame(uninterrupted)
    assert same_learngene(run_dir, uninterrupted)


def test_resume_from_a_checkpoint_file_of_another_generation(uninterrupted, tmp_path):
    import shutil

    run_dir = tmp_path / "copy"
    shutil.copytree(uninterrupted, run_dir)
    os.remove(run_dir / "checkpoints" / "latest.pkl")
    os.remove(run_dir / "checkpoints" / "gen_0002.pkl")
    os.remove(run_dir / "checkpoints" / "gen_0003.pkl")
    assert run_cli.main(["--resume", str(run_dir / "checkpoints" / "gen_0001.pkl"), "--quiet"]) == 0
    assert comparable_logbook(run_dir) == comparable_logbook(uninterrupted)
    assert same_learngene(run_dir, uninterrupted)


def test_extending_a_finished_run_adds_generations(uninterrupted, tmp_path):
    import shutil

    run_dir = tmp_path / "extend"
    shutil.copytree(uninterrupted, run_dir)
    assert run_cli.main(["--resume", str(run_dir), "--set", f"ea.generations={GENERATIONS + 1}", "--quiet"]) == 0
    gens = [line["gen"] for line in comparable_logbook(run_dir)]
    assert gens == list(range(GENERATIONS + 2))
    assert comparable_logbook(run_dir)[: GENERATIONS + 1] == comparable_logbook(uninterrupted)


def test_incompatible_recipe_is_refused_saying_what_differs(uninterrupted, capsys):
    assert run_cli.main(["--resume", str(uninterrupted), "--set", "model.family=vgg11", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "model.family is 'conv4' in the checkpoint but 'vgg11' here" in err
    assert run_cli.main(["--resume", str(uninterrupted), "--set", "model.width=0.5", "--quiet"]) == 2
    assert "model.width" in capsys.readouterr().err


@pytest.mark.parametrize("override,key", [
    ("data.split={train: 60, val: 20, test: 20}", "data.split"),
    ("data.seed=1", "data.seed"),
    ("data.root=/elsewhere", "data.root"),
])
def test_resume_refuses_any_change_that_moves_classes_between_splits(uninterrupted, capsys, override, key):
    before = sorted(os.listdir(uninterrupted / "checkpoints"))
    assert run_cli.main(["--resume", str(uninterrupted), "--set", override, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"{key} is " in err and "in the checkpoint but" in err and len(err.strip().splitlines()) == 1
    assert sorted(os.listdir(uninterrupted / "checkpoints")) == before


def test_a_resumed_run_keeps_the_layout_it_was_started_in(tmp_path, capsys):
    import yaml

    run_dir = tmp_path / "nchw"
    assert run_cli.main([*sets(**{"ea.generations": 0, "runtime.channels_last": "false"}), "--run-dir", str(run_dir),
                         "--quiet"]) == 0
    recipe = os.path.join(ROOT, "genomes", "default.yaml")  # it asks for channels-last
    assert yaml.safe_load(open(recipe))["runtime"]["channels_last"] is True
    assert run_cli.main(["--resume", str(run_dir), "--config", recipe, *sets(**{"ea.generations": 1}),
                         "--quiet"]) == 0
    assert "runtime.channels_last=false" in capsys.readouterr().out
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["runtime"]["channels_last"] is False
    assert run_cli.main(["--resume", str(run_dir), "--config", recipe, *sets(**{"ea.generations": 2}),
                         "--set", "runtime.channels_last=true", "--quiet"]) == 0  # asked for: switched
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["runtime"]["channels_last"] is True


def test_corrupted_latest_checkpoint_falls_back_to_the_previous_good_one(uninterrupted, tmp_path, capsys):
    import shutil

    run_dir = tmp_path / "corrupt"
    shutil.copytree(uninterrupted, run_dir)
    latest = run_dir / "checkpoints" / "latest.pkl"
    data = latest.read_bytes()
    latest.write_bytes(data[: len(data) // 2])  # truncated
    newest = run_dir / "checkpoints" / f"gen_{GENERATIONS:04d}.pkl"
    flipped = bytearray(newest.read_bytes())
    flipped[-100] ^= 0xFF  # one corrupted byte
    newest.write_bytes(bytes(flipped))
    payload, path = load_latest_valid(run_dir, warn=print)
    assert payload["generation"] == GENERATIONS - 1 and path.endswith(f"gen_{GENERATIONS - 1:04d}.pkl")
    out = capsys.readouterr().out
    assert "truncated or corrupted" in out


def test_a_latest_checkpoint_left_behind_by_a_kill_does_not_hide_a_newer_generation(uninterrupted, tmp_path):
    import shutil

    # gen_NNNN.pkl is written before latest.pkl: a kill between the two writes leaves latest.pkl
    # one generation behind the newest gen file
    run_dir = tmp_path / "stale"
    shutil.copytree(uninterrupted, run_dir)
    shutil.copy(run_dir / "checkpoints" / "gen_0001.pkl", run_dir / "checkpoints" / "latest.pkl")
    payload, path = load_latest_valid(run_dir, warn=lambda *_: None)
    assert payload["generation"] == GENERATIONS and path.endswith(f"gen_{GENERATIONS:04d}.pkl")


def test_a_run_with_only_broken_checkpoints_is_a_clear_error(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "gen_0000.pkl").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="no valid checkpoint"):
        load_latest_valid(tmp_path, warn=lambda *_: None)


class _RunsACommand:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_checkpoint_that_would_run_a_command_is_refused(tmp_path):
    from learngene_ea.io.checkpoint import dumps_checkpoint

    marker = tmp_path / "pwned"
    evil = _RunsACommand()
    evil.marker = marker
    (tmp_path / "evil.pkl").write_bytes(dumps_checkpoint({"format": "learngene-ea/checkpoint-v1", "x": evil}))
    with pytest.raises(CheckpointError, match="refusing to load 'posix.system'|refusing to load 'os.system'"):
        load_checkpoint(tmp_path / "evil.pkl")
    assert not marker.exists()
    result = run_module(["-m", "learngene_ea.run", "--resume", str(tmp_path / "evil.pkl")], cwd=ROOT)
    assert result.returncode == 2 and "refusing to load" in result.stderr and not marker.exists()


def test_resuming_past_a_refused_newest_checkpoint_stops_naming_it(uninterrupted, tmp_path, capsys):
    """A refused file (a verified pickle that names a forbidden global) is not crash damage: the
    fallback to an older checkpoint, meant for truncation and checksum damage, must not hide it."""
    import shutil

    from learngene_ea.io.checkpoint import dumps_checkpoint

    run_dir = tmp_path / "tampered"
    shutil.copytree(uninterrupted, run_dir)
    evil = _RunsACommand()
    evil.marker = tmp_path / "pwned"
    newest = run_dir / "checkpoints" / f"gen_{GENERATIONS + 1:04d}.pkl"
    newest.write_bytes(dumps_checkpoint({"format": "learngene-ea/checkpoint-v1", "x": evil}))
    before = sorted(os.listdir(run_dir / "checkpoints"))
    assert run_cli.main(["--resume", str(run_dir), "--set", f"ea.generations={GENERATIONS + 2}", "--quiet"]) == 2
    out, err = capsys.readouterr()
    assert err.strip().splitlines() == [
        f"error: checkpoint {str(newest)!r}: refusing to load 'posix.system': checkpoints may only contain "
        "populations, numbers and arrays (see 'Trust model' in the README); inspect that file: a refused "
        "checkpoint is not crash damage, so no older one is tried (move it away to resume from the one before it)."]
    assert "Trying the previous checkpoint" not in out and not evil.marker.exists()
    assert sorted(os.listdir(run_dir / "checkpoints")) == before  # nothing evolved, nothing written


@pytest.mark.parametrize("make", [lambda p: p.mkdir(), lambda p: p.symlink_to(p.name)])
def test_a_newest_checkpoint_that_is_no_file_stops_the_resume_too(uninterrupted, tmp_path, capsys, make):
    import shutil

    run_dir = tmp_path / "odd"
    shutil.copytree(uninterrupted, run_dir)
    make(run_dir / "checkpoints" / f"gen_{GENERATIONS + 1:04d}.pkl")
    assert run_cli.main(["--resume", str(run_dir), "--quiet"]) == 2
    assert "inspect that file" in capsys.readouterr().err


def test_seeding_a_new_run_from_another_runs_population(uninterrupted, tmp_path):
    new_dir = tmp_path / "seeded"
    assert run_cli.main([*sets(**{"ea.generations": 1}), "--seed-population",
                         str(uninterrupted / "checkpoints" / "latest.pkl"), "--best-k", "2",
                         "--run-dir", str(new_dir), "--quiet"]) == 0
    source = load_checkpoint(uninterrupted / "checkpoints" / "latest.pkl")["population"]
    best_two = sorted(source, key=lambda ind: (-ind.fitness.values[0], ind.fitness.values[1]))[:2]
    gen0 = load_checkpoint(new_dir / "checkpoints" / "gen_0000.pkl")["population"]
    assert len(gen0) == 4
    for ind, seed in zip(gen0, best_two * 2):
        assert all(np.array_equal(a, b) for a, b in zip(ind, seed))  # masks carried over
        assert ind.parents == [seed.id] and ind.learngene is not None
    assert (new_dir / "learngene.pt").exists()


def test_seeding_from_an_incompatible_population_is_refused(uninterrupted, tmp_path, capsys):
    code = run_cli.main([*sets(**{"model.family": "vgg11"}), "--seed-population",
                         str(uninterrupted / "checkpoints" / "latest.pkl"), "--run-dir", str(tmp_path / "x")])
    assert code == 2 and "model.family" in capsys.readouterr().err


def _start(run_dir, env_extra=None):
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS="1", **(env_extra or {}))
    return subprocess.Popen([sys.executable, "-m", "learngene_ea.run", *sets(), "--run-dir", str(run_dir),
                             "--quiet"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


@pytest.mark.slow
def test_sigkill_during_evaluation_then_resume_matches(uninterrupted, tmp_path):
    run_dir = tmp_path / "killed"
    proc = _start(run_dir)
    deadline = time.time() + 240
    while not (run_dir / "checkpoints" / "gen_0001.pkl").exists():  # generation 2 is now evaluating
        assert time.time() < deadline and proc.poll() is None
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    payload, _ = load_latest_valid(run_dir, warn=lambda *_: None)
    assert payload["generation"] >= 1  # no finished generation lost
    assert run_cli.main(["--resume", str(run_dir), "--quiet"]) == 0
    assert comparable_logbook(run_dir) == comparable_logbook(uninterrupted)
    assert same_learngene(run_dir, uninterrupted)


@pytest.mark.slow
@pytest.mark.parametrize("file_name", ["gen_0002.pkl", "latest.pkl"])
def test_sigkill_while_writing_a_checkpoint_then_resume_matches(uninterrupted, tmp_path, file_name):
    run_dir = tmp_path / "killed"
    proc = _start(run_dir, {"LEARNGENE_EA_TEST_KILL_DURING_WRITE": file_name})
    proc.wait(timeout=240)
    assert proc.returncode == -signal.SIGKILL
    assert not (run_dir / "checkpoints" / "gen_0003.pkl").exists()
    payload, _ = load_latest_valid(run_dir, warn=lambda *_: None)
    # killed at the first write of that file: generation 1 (gen_0002) or 0 (latest); the
    # checkpoints already written survived whole
    assert payload["generation"] == {"gen_0002.pkl": 1, "latest.pkl": 0}[file_name]
    assert run_cli.main(["--resume", str(run_dir), "--quiet"]) == 0
    assert comparable_logbook(run_dir) == comparable_logbook(uninterrupted)
    assert same_learngene(run_dir, uninterrupted)


def broken_mutation(individual):
    raise ValueError("my operator has a bug")


def test_a_failing_custom_operator_stops_the_run_naming_it_with_the_checkpoint_safe(tmp_path, capsys):
    run_dir = tmp_path / "run"
    code = run_cli.main([*sets(), "--set", "operators.mutate={function: 'test_resume:broken_mutation'}",
                         "--run-dir", str(run_dir), "--quiet"])
    err = capsys.readouterr().err
    assert code == 1
    assert "operator 'mutate' (test_resume:broken_mutation) failed while making generation 1" in err
    assert "ValueError: my operator has a bug" in err
    payload = load_checkpoint(run_dir / "checkpoints" / "latest.pkl")
    assert payload["generation"] == 0  # generation 0 finished and is safe
    assert (run_dir / "learngene.pt").exists()
