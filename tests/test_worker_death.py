"""A SCOOP worker that dies mid-run stops the run with a clear message; nothing finished is lost."""
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT, tiny_overrides
from learngene_ea.checkpoint import load_latest_valid


def descendants(pid):
    """PIDs of every process below ``pid`` (from /proc)."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, stack = [], [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode()
    except OSError:
        return ""


@pytest.mark.slow
def test_killed_worker_stops_the_run_with_a_message_and_it_resumes(tmp_path):
    run_dir = tmp_path / "run"
    args = [sys.executable, "-m", "scoop", "-n", "2", "-m", "learngene_ea.run", "--run-dir", str(run_dir), "--quiet"]
    for item in tiny_overrides(**{"ea.generations": 2, "runtime.stall_timeout": 30, "task.steps": 30}):
        args += ["--set", item]
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS="1")
    proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while not (run_dir / "checkpoints" / "gen_0000.pkl").exists():
        assert time.time() < deadline and proc.poll() is None
        time.sleep(0.1)
    workers = [p for p in descendants(proc.pid) if "scoop.bootstrap" in cmdline(p)]
    others = [p for p in workers if "--echoGroup" not in cmdline(p)] or workers[1:]
    assert workers
    os.kill(others[-1], signal.SIGKILL)
    out, err = proc.communicate(timeout=300)
    payload, _ = load_latest_valid(run_dir, warn=lambda *_: None)
    assert payload["generation"] >= 0  # generation 0 finished and is safe
    if proc.returncode != 0:  # the usual outcome: the dead worker's evaluations never come back
        assert "a SCOOP worker has probably died" in err and "--resume" in err
        resumed = subprocess.run([sys.executable, "-m", "learngene_ea.run", "--resume", str(run_dir), "--quiet"],
                                 cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert resumed.returncode == 0, resumed.stderr
    payload, _ = load_latest_valid(run_dir, warn=lambda *_: None)
    assert payload["generation"] == 2
