"""A run folder has one writer, and a stop at any instant leaves something ``--resume`` continues, with
a true sentence saying so: the lock, the checkpoint before generation 0, the messages, the leftovers."""
import json
import os
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, tiny_overrides
from learngene_ea.cli import run as run_cli
from learngene_ea.ea import evolve as evolve_module
from learngene_ea.ea import gene_pool
from learngene_ea.io.checkpoint import load_checkpoint
from learngene_ea.io.lock import run_folder_lock

# a gene pool with a warm start: the compute a kill before generation 0 used to lose
WARM = {"fitness.inheritance": "pool", "pool.warm_start_fraction": 0.5, "fitness.rescore_episodes": 0,
        "ea.generations": 1}


def args(run_dir, **extra):
    sets = [a for item in tiny_overrides(**{**WARM, **extra}) for a in ("--set", item)]
    return [*sets, "--run-dir", str(run_dir), "--quiet"]


def logbook(run_dir):
    return [{k: v for k, v in json.loads(line).items() if k != "seconds"}
            for line in (run_dir / "logbook.jsonl").read_text().splitlines()]


def same_pool(a, b):
    wa = load_checkpoint(a / "checkpoints" / "latest.pkl")["pool"]["learngene"].weights
    wb = load_checkpoint(b / "checkpoints" / "latest.pkl")["pool"]["learngene"].weights
    return all(np.array_equal(wa[n][k], wb[n][k]) for n in wa for k in wa[n])


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("warm") / "run"
    assert run_cli.main(args(run_dir)) == 0
    return run_dir


def interrupt(monkeypatch, module, name):
    def stop(*_, **__):
        raise KeyboardInterrupt

    monkeypatch.setattr(module, name, stop)


# ------------------------------------------------------------------------ one writer

def test_a_second_writer_of_a_run_folder_is_refused_naming_the_holder(uninterrupted, tmp_path, capsys):
    run_dir = tmp_path / "busy"
    shutil.copytree(uninterrupted, run_dir)
    before = {p: (run_dir / p).read_bytes() for p in ("config.yaml", "logbook.jsonl")}
    with run_folder_lock(str(run_dir)):  # another --resume of it is running
        assert run_cli.main(["--resume", str(run_dir), "--set", "ea.generations=2", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"is being written by another process (pid {os.getpid()})" in err
    assert len(err.strip().splitlines()) == 1
    assert {p: (run_dir / p).read_bytes() for p in before} == before


def test_the_lock_goes_with_the_process_that_held_it(tmp_path):
    holder = ("import sys, time; from learngene_ea.io.lock import run_folder_lock\n"
              "with run_folder_lock(sys.argv[1]):\n    print('held', flush=True); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", holder, str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE,
                            text=True, env=dict(os.environ, PYTHONPATH=ROOT))
    assert proc.stdout.readline().strip() == "held"
    with pytest.raises(Exception, match=f"pid {proc.pid}"):
        with run_folder_lock(str(tmp_path)):
            pass
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with run_folder_lock(str(tmp_path)):  # released by the kernel with its process
        pass


# ------------------------------------------------------- before the first generation

def test_a_stop_during_the_warm_start_resumes_to_the_uninterrupted_run(uninterrupted, tmp_path, monkeypatch, capsys):
    run_dir = tmp_path / "run"
    interrupt(monkeypatch, gene_pool, "initial_pool")
    assert run_cli.main(args(run_dir)) == 130
    err = capsys.readouterr().err
    assert f"interrupted: no generation finished; --resume {run_dir} starts generation 0 from " \
           "checkpoints/start.pkl." in err
    monkeypatch.undo()
    assert run_cli.main(["--resume", str(run_dir), "--quiet"]) == 0
    assert logbook(run_dir) == logbook(uninterrupted) and same_pool(run_dir, uninterrupted)


def test_a_stop_in_generation_0_keeps_the_warm_start(uninterrupted, tmp_path, monkeypatch, capsys):
    run_dir = tmp_path / "run"
    interrupt(monkeypatch, evolve_module, "evaluate_population")
    assert run_cli.main(args(run_dir)) == 130
    assert load_checkpoint(run_dir / "checkpoints" / "start.pkl")["pool"]["warm_start"]["kind"] == "warm_start"
    monkeypatch.undo()
    capsys.readouterr()
    assert run_cli.main(["--resume", str(run_dir), "--quiet"]) == 0
    assert "warm start" not in capsys.readouterr().out  # not trained again
    assert logbook(run_dir) == logbook(uninterrupted) and same_pool(run_dir, uninterrupted)


def test_a_folder_without_any_checkpoint_resumes_as_a_fresh_start_of_its_config(uninterrupted, tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert run_cli.main(args(run_dir, **{"pool.warm_start_fraction": 0})) == 0
    expected = logbook(run_dir)
    for name in os.listdir(run_dir):  # what a kill before any checkpoint leaves
        if name not in ("config.yaml", "checkpoints"):
            os.remove(run_dir / name) if (run_dir / name).is_file() else shutil.rmtree(run_dir / name)
    shutil.rmtree(run_dir / "checkpoints")
    assert run_cli.main(args(run_dir, **{"pool.warm_start_fraction": 0})) == 2
    assert f"resume it with --resume {run_dir}" in capsys.readouterr().err
    assert run_cli.main(["--resume", str(run_dir), "--quiet"]) == 0
    assert f"no checkpoint in {run_dir}: starting it again from" in capsys.readouterr().out
    assert logbook(run_dir) == expected


# ------------------------------------------------------------------ true messages, leftovers

def test_ctrl_c_names_the_run_folder_and_the_checkpoint_it_keeps(tmp_path, monkeypatch, capsys):
    from conftest import stopped_after

    run_dir = tmp_path / "run"
    with stopped_after(0):
        assert run_cli.main(args(run_dir, **{"pool.warm_start_fraction": 0})) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (f"interrupted: the last finished generation is in "
                       f"{os.path.join(run_dir, 'checkpoints', 'gen_0000.pkl')}; continue with --resume {run_dir}.")


def test_ctrl_c_before_the_run_folder_exists_says_nothing_was_written(tmp_path, monkeypatch, capsys):
    from learngene_ea.api import run as run_api

    interrupt(monkeypatch, run_api, "check_run_fits")
    assert run_cli.main(args(tmp_path / "run")) == 130
    assert capsys.readouterr().err.strip() == "interrupted: nothing was written."
    assert not (tmp_path / "run").exists()


def test_a_resume_removes_the_temporary_files_of_killed_writes(uninterrupted, tmp_path, capsys):
    run_dir = tmp_path / "run"
    shutil.copytree(uninterrupted, run_dir)
    stale = [run_dir / "checkpoints" / ".gen_0002.pkl.k3j9_x0a.tmp", run_dir / ".summary.json.a1b2c3d4.tmp"]
    for path in stale:
        path.write_bytes(b"half a file")
    assert run_cli.main(["--resume", str(run_dir), "--set", "ea.generations=2", "--quiet"]) == 0
    assert not any(path.exists() for path in stale)
    assert f"removed {stale[0]}, left by a killed write" in capsys.readouterr().out
