"""A SCOOP worker that dies mid-run stops the run with a clear message; nothing finished is lost."""
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT, tiny_overrides
from learngene_ea.ea import operators
from learngene_ea.io.checkpoint import load_latest_valid

TESTS = os.path.dirname(os.path.abspath(__file__))
STALL_TIMEOUT = 10  # seconds; a first evaluation takes about 3 (imports, warm-up), later ones well under 1


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


def is_gone(pid):
    """True once ``pid`` has exited (it may linger as a zombie until its parent reaps it)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def select_after_the_kill(individuals, k, handshake, tournsize, tolerance):
    """The default selection, run once the test has killed the worker (a handshake through files).

    Selection is the first step of every later generation, so the worker dies between
    generations: it has returned its generation-0 results and waits, idle, for work.
    """
    go = os.path.join(handshake, "go")
    if not os.path.exists(go):
        open(os.path.join(handshake, "ready"), "w").close()
        deadline = time.monotonic() + 120
        while not os.path.exists(go) and time.monotonic() < deadline:
            time.sleep(0.05)
    return operators.sel_parsimony_tournament(individuals, k, tournsize, tolerance)


def wait_for(condition, proc, seconds, what):
    deadline = time.monotonic() + seconds
    while not condition():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the run ended (status {proc.returncode}) before {what}:\n{err[-3000:]}")
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.mark.slow
def test_killed_worker_stops_the_run_with_a_message_and_it_resumes(tmp_path):
    """Killed between generations, the worker is still handed generation 1's evaluations and never
    answers: the watchdog ends the run with status 1 and its message after ``stall_timeout``."""
    run_dir, handshake = tmp_path / "run", tmp_path / "handshake"
    handshake.mkdir()
    select = (f"operators.select={{function: 'test_worker_death:select_after_the_kill', "
              f"kwargs: {{handshake: '{handshake}', tournsize: 2, tolerance: 0.01}}}}")
    args = [sys.executable, "-m", "scoop", "-n", "2", "-m", "learngene_ea.run", "--run-dir", str(run_dir), "--quiet"]
    for item in tiny_overrides(**{"ea.generations": 2, "runtime.stall_timeout": STALL_TIMEOUT}) + [select]:
        args += ["--set", item]
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + TESTS, OMP_NUM_THREADS="1")
    proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        wait_for((handshake / "ready").exists, proc, 240, "generation 1's selection")
        workers = [p for p in descendants(proc.pid) if "scoop.bootstrap" in cmdline(p)]
        helpers = [p for p in workers if "--origin" not in cmdline(p)]
        assert len(workers) == 2 and len(helpers) == 1
        os.kill(helpers[0], signal.SIGKILL)
        wait_for(lambda: is_gone(helpers[0]), proc, 30, "the worker's death")
        time.sleep(0.5)  # let the broker see the closed connection before generation 1 is sent out
        (handshake / "go").touch()
        released = time.monotonic()
        out, err = proc.communicate(timeout=STALL_TIMEOUT + 60)
        stalled_for = time.monotonic() - released
    finally:
        if proc.poll() is None:  # a hung run must not outlive the test
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == 1, err[-3000:]
    assert (f"error: no evaluation finished for {STALL_TIMEOUT} s, so a SCOOP worker has probably died; "
            "the last finished generation is safe in checkpoints/latest.pkl: continue with --resume") in err
    assert STALL_TIMEOUT <= stalled_for < STALL_TIMEOUT + 30
    payload, _ = load_latest_valid(run_dir, warn=lambda *_: None)
    assert payload["generation"] == 0  # generation 0 finished and is safe; generation 1 never did
    # the checkpoint names the test's operator: code a run folder names runs only on the user's word
    resumed = subprocess.run([sys.executable, "-m", "learngene_ea.run", "--resume", str(run_dir), "--quiet",
                              "--trust-module", "test_worker_death:select_after_the_kill"],
                             cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    payload, _ = load_latest_valid(run_dir, warn=lambda *_: None)
    assert payload["generation"] == 2
