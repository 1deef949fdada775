"""``python -m scoop -m MODULE``: the argv rewriting hook, its installation, and real launches.

The launches (marked ``slow``) start SCOOP with 2 workers on localhost, like the README's
``python -m scoop -n 8 -m learngene_ea.run --config ...``: first a demo module
(``tests/scoop_demo/lgea_scoop_demo/demo.py``, importable with ``tests/scoop_demo`` on the
path) that checks what SCOOP and the hook do, then tiny real runs of ``learngene_ea.run``.
They need the package installed (``pip install -e .``): the hook ships as a .pth file in
site-packages.
"""
import importlib.metadata
import json
import os
import signal
import subprocess
import sys

import pytest

from conftest import tiny_overrides
from learngene_ea import _scoop_module_hook as hook

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO_DIR = os.path.join(REPO, "tests", "scoop_demo")  # on PYTHONPATH for the demo's launches
DEMO = "lgea_scoop_demo.demo"
DEMO_FILE = os.path.join("tests", "scoop_demo", "lgea_scoop_demo", "demo.py")  # relative to REPO
PTH_NAME = "learngene_ea_scoop_hook.pth"
LAUNCH_TIMEOUT_S = 120
RUN_TIMEOUT_S = 300  # a tiny real run: tens of seconds on a quiet 2-core machine


@pytest.fixture(autouse=True)
def demo_importable(monkeypatch):
    """The rewriting looks the demo module up (without importing it): put it on the path."""
    monkeypatch.syspath_prepend(DEMO_DIR)


@pytest.fixture(scope="module")
def scoop_parser():
    import scoop.launcher

    return scoop.launcher.makeParser()


# --- which interpreter invocations arm the hook ------------------------------------------------

@pytest.mark.parametrize("orig_argv, module", [
    (["python", "-m", "scoop", "-n", "2", "-m", DEMO], "scoop"),
    (["python", "-mscoop", "-n", "2"], "scoop"),
    (["python", "-m", "scoop.__main__", "-n", "2"], "scoop.__main__"),
    (["python", "-u", "-X", "importtime", "-W", "ignore", "-m", "scoop"], "scoop"),
    (["python", "-Wignore", "-Bm", "scoop"], "scoop"),
    (["python", "--check-hash-based-pycs", "never", "-m", "scoop"], "scoop"),
    (["python", "-m", "scoop.bootstrap.__main__", "--origin", "x.py"], "scoop.bootstrap.__main__"),
    (["python", "script.py", "-m", "scoop"], None),
    (["python", "-c", "pass", "-m", "scoop"], None),
    (["python", "-", "-m", "scoop"], None),
    (["python"], None),
    ([], None),
])
def test_python_main_module(orig_argv, module):
    assert hook.python_main_module(orig_argv) == module


def test_install_only_for_the_scoop_launcher(monkeypatch):
    monkeypatch.setattr(sys, "meta_path", list(sys.meta_path))
    before = list(sys.meta_path)
    for orig_argv in (["python", "-m", "pytest"], ["python", "-m", "scoop.bootstrap.__main__", "x"],
                      ["python", "x.py", "-m", "scoop"]):
        monkeypatch.setattr(sys, "orig_argv", orig_argv)
        hook.install()
        assert sys.meta_path == before
    monkeypatch.setattr(sys, "orig_argv", ["python", "-m", "scoop", "-n", "2", "-m", DEMO])
    hook.install()
    hook.install()  # site runs a .pth twice when lib64 links to lib: one finder only
    added = [f for f in sys.meta_path if f not in before]
    assert len(added) == 1 and sys.meta_path[0] is added[0]


def test_install_never_raises(monkeypatch):
    monkeypatch.setattr(sys, "orig_argv", None)  # not a list: python_main_module fails
    monkeypatch.setattr(sys, "meta_path", list(sys.meta_path))
    before = list(sys.meta_path)
    hook.install()
    assert sys.meta_path == before


# --- the rewriting ------------------------------------------------------------------------------

def test_rewrites_module_in_the_executable_place(scoop_parser):
    argv = ["-n", "2", "-m", DEMO, "--some-arg", "x", "-m", "other"]
    new = hook.rewrite_argv(argv, scoop_parser)
    assert new == ["-n", "2", hook.HOOK_FILE, DEMO, "--some-arg", "x", "-m", "other"]
    parsed = scoop_parser.parse_args(new)
    assert parsed.n == 2 and parsed.executable == hook.HOOK_FILE
    assert parsed.args == [DEMO, "--some-arg", "x", "-m", "other"]


@pytest.mark.parametrize("argv, expected", [
    (["-m", DEMO], [hook.HOOK_FILE, DEMO]),
    (["-m" + DEMO, "a"], [hook.HOOK_FILE, DEMO, "a"]),
    (["--hosts", "127.0.0.1", "127.0.0.1", "-n", "2", "-m", DEMO],
     ["--hosts", "127.0.0.1", "127.0.0.1", "-n", "2", hook.HOOK_FILE, DEMO]),
    (["--hostfile", "hosts.txt", "--python-interpreter", "python3", "-vv", "-m", DEMO],
     ["--hostfile", "hosts.txt", "--python-interpreter", "python3", "-vv", hook.HOOK_FILE, DEMO]),
])
def test_rewrites_after_scoop_options(scoop_parser, argv, expected):
    assert hook.rewrite_argv(argv, scoop_parser) == expected


@pytest.mark.parametrize("argv", [
    [],
    ["-n", "2", DEMO_FILE, "-m", DEMO],  # -m belongs to the script
    ["-n", "2", DEMO_FILE, "--x", "1"],  # no -m at all
    ["-n", "2", "-m"],  # nothing after -m
    ["-n", "2", "-m", "--quiet"],
    ["-n", "2", "--", "-m", DEMO],
    ["-h", "-m", DEMO],
    ["--no-such-option", "-m", DEMO],
    ["-n", "-m", DEMO],
])
def test_leaves_everything_else_alone(scoop_parser, argv, capsys):
    assert hook.rewrite_argv(argv, scoop_parser) is None
    assert capsys.readouterr() == ("", "")  # SCOOP's parser was consulted silently


def test_unknown_module_is_left_alone_with_a_hint(scoop_parser, capsys):
    argv = ["-n", "2", "-m", "learngene_ea.no_such_module", "--x"]
    assert hook.rewrite_argv(argv, scoop_parser) is None
    assert "no module named 'learngene_ea.no_such_module'" in capsys.readouterr().err
    assert hook.rewrite_argv(["-m", "no_such_top_level_module_xyz"], scoop_parser) is None
    assert hook.rewrite_argv(["-m", "not a module name"], scoop_parser) is None


def test_module_exists_is_injectable(scoop_parser):
    argv = ["-m", "whatever.mod"]
    assert hook.rewrite_argv(argv, scoop_parser, hook_file="/h.py", module_exists=lambda m: True) \
        == ["/h.py", "whatever.mod"]
    assert hook.rewrite_argv(argv, scoop_parser, module_exists=lambda m: False) is None


def test_find_module_spec_does_not_import(tmp_path, monkeypatch):
    package = tmp_path / "hookprobe_pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("raise RuntimeError('imported the package')\n")
    (package / "sub" / "__init__.py").write_text("raise RuntimeError('imported the subpackage')\n")
    (package / "sub" / "mod.py").write_text("raise RuntimeError('imported the module')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = hook.find_module_spec("hookprobe_pkg.sub.mod")
    assert spec is not None and spec.origin == str(package / "sub" / "mod.py")
    assert hook.find_module_spec("hookprobe_pkg.sub.missing") is None
    assert hook.find_module_spec("hookprobe_pkg.sub.mod.deeper") is None
    assert not any(name.startswith("hookprobe_pkg") for name in sys.modules)


def test_finder_rewrites_the_launcher_argv_once(monkeypatch):
    monkeypatch.setattr(sys, "meta_path", list(sys.meta_path))
    finder = hook._ScoopMainFinder()
    sys.meta_path.insert(0, finder)
    launcher_argv = ["-m", "-n", "2", "-m", DEMO, "--some-arg", "x"]
    monkeypatch.setattr(sys, "argv", list(launcher_argv))
    assert finder.find_spec("json") is None
    assert sys.argv == launcher_argv and sys.meta_path[0] is finder  # other imports: untouched
    assert finder.find_spec("scoop.__main__") is None  # the real finders find SCOOP
    assert sys.argv == ["-m", "-n", "2", hook.HOOK_FILE, DEMO, "--some-arg", "x"]
    assert finder not in sys.meta_path


def test_finder_ignores_lookups_outside_runpy_start(monkeypatch):
    monkeypatch.setattr(sys, "meta_path", list(sys.meta_path))
    finder = hook._ScoopMainFinder()
    sys.meta_path.insert(0, finder)
    argv = ["/some/script.py", "-n", "2", "-m", DEMO]  # argv[0] set: not runpy finding __main__
    monkeypatch.setattr(sys, "argv", list(argv))
    finder.find_spec("scoop.__main__")
    assert sys.argv == argv


# --- installation -------------------------------------------------------------------------------

def _installed_pth():
    """The hook's .pth as recorded by the installed distribution (pip uninstall removes it)."""
    # Only installed distributions have a RECORD (not the learngene_ea.egg-info a build leaves
    # in the source tree, which comes first on sys.path when tests run from the repo root).
    installed = [d for d in importlib.metadata.distributions()
                 if (d.metadata["Name"] or "").lower().replace("_", "-") == "learngene-ea"
                 and d.read_text("RECORD") is not None]
    if not installed:
        pytest.fail("learngene-ea is not installed: run `pip install -e .` (or `pip install .`), "
                    "which puts the hook's .pth into site-packages")
    for f in installed[0].files or []:
        if str(f) == PTH_NAME:
            return f.locate()
    pytest.fail(PTH_NAME + " is not among the installed files of learngene-ea (setup.py)")


def test_pth_is_installed_and_inert_elsewhere():
    path = _installed_pth()
    assert os.path.isfile(path)
    with open(path, encoding="utf-8") as f:
        assert f.read().startswith("import sys; ")
    # Any other interpreter start-up leaves the hook unloaded and the import system unchanged.
    code = ("import sys; print('_learngene_ea_scoop_hook' in sys.modules, "
            "any(getattr(f, 'learngene_ea_scoop_hook', 0) for f in sys.meta_path))")
    out = subprocess.run([sys.executable, "-c", code, "-m", "scoop"], capture_output=True,
                         text=True, timeout=60, cwd=REPO)
    assert out.returncode == 0 and out.stdout.split() == ["False", "False"], out


# --- real launches: the demo ----------------------------------------------------------------------

def _launch(args, timeout=LAUNCH_TIMEOUT_S):
    """Run ``python ARGS`` from the repo root (demo on PYTHONPATH); kill its process group on timeout.

    Returns ``(returncode, stdout, stderr)``.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (DEMO_DIR, env.get("PYTHONPATH")) if p)
    proc = subprocess.Popen([sys.executable] + args, cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail("python {0} did not finish in {1} s\n{2}\n{3}".format(
            " ".join(args), timeout, out[-3000:], err[-3000:]))
    return proc.returncode, out, err


def _run(args):
    """Launch the demo; return its DEMO_RESULT and stderr."""
    code, out, err = _launch(args)
    results = [line[len("DEMO_RESULT "):] for line in out.splitlines()
               if line.startswith("DEMO_RESULT ")]
    assert code == 0 and len(results) == 1, (code, out[-3000:], err[-5000:])
    return json.loads(results[0]), err


def _check_parallel_results(result):
    assert result["scoop_running"] is True
    assert result["abs"] == [1, 2, 3]
    assert result["square_main"] == [1, 4, 9]  # defined in __main__, pickled as __main__.square
    assert result["square_module"] == [16, 25]  # pickled as lgea_scoop_demo.demo.square
    assert result["square_module_name"] == DEMO
    for kind in ("main", "module"):
        calls = result[kind + "_calls"]
        assert result[kind + "_tagged_ok"] is True  # objects made on workers came back as the class
        assert sorted(c["i"] for c in calls) == list(range(8))
        assert {c["size"] for c in calls} == {2}
        # The worker ran calls: it unpickled the function (and the origin the instances it made).
        pids = {c["pid"] for c in calls}
        assert len(pids - {result["origin_pid"]}) == 1, calls
    main_modules = {(c["is_origin"], c["module"]) for c in result["main_calls"]}
    assert (False, "SCOOP_WORKER") in main_modules and main_modules <= {(True, "__main__"),
                                                                       (False, "SCOOP_WORKER")}
    assert {c["module"] for c in result["module_calls"]} == {DEMO}
    _check_worker_identity(result["main_calls"] + result["module_calls"])


def _check_worker_identity(calls):
    """learngene_ea.parallel.scoop_engine: each process of the run has its own index (0 or 1, a GPU index)."""
    index_of = {}
    for c in calls:
        assert c["worker_index"] == c["slot"]  # under SCOOP the index is the local slot
        assert index_of.setdefault(c["pid"], c["worker_index"]) == c["worker_index"]  # kept for life
        assert c["worker_count"] == 2
        assert c["default_threads"] == max(1, _cores() // 2)
    assert len(index_of) == 2, calls  # both processes ran calls (spread() made sure)
    assert sorted(index_of.values()) == [0, 1]  # two concurrent processes: different indexes


def _cores():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


@pytest.mark.slow
def test_scoop_runs_a_module_with_its_arguments():
    _installed_pth()
    result, _ = _run(["-m", "scoop", "-n", "2", "-m", DEMO, "--some-arg", "x"])
    assert result["argv"] == ["--some-arg", "x"]
    assert result["argv0"] == os.path.join(DEMO_DIR, "lgea_scoop_demo", "demo.py")
    assert result["name"] == "__main__" and result["package"] == "lgea_scoop_demo"
    assert result["relative_import"] is True
    _check_parallel_results(result)


@pytest.mark.slow
def test_scoop_runs_a_file_as_before():
    result, _ = _run(["-m", "scoop", "-n", "2", DEMO_FILE, "--some-arg", "x"])
    assert result["argv"] == ["--some-arg", "x"]
    assert result["argv0"] == DEMO_FILE
    assert result["relative_import"] is False  # a file has no package, as always with SCOOP
    _check_parallel_results(result)


@pytest.mark.slow
def test_module_runs_without_scoop():
    result, err = _run(["-m", DEMO, "y"])
    assert result["argv"] == ["y"]
    assert result["scoop_running"] is False
    assert result["relative_import"] is True
    assert result["abs"] == [1, 2, 3]
    assert result["main_tagged_ok"] is True and result["module_tagged_ok"] is True
    calls = result["main_calls"] + result["module_calls"]
    assert {c["pid"] for c in calls} == {result["origin_pid"]}
    assert {(c["slot"], c["worker_index"], c["worker_count"]) for c in calls} == {(0, 0, 1)}
    assert {c["default_threads"] for c in calls} == {_cores()}
    assert "SCOOP was not started properly" not in err  # the builtin map was used directly


# --- real launches: tiny runs of learngene_ea.run ------------------------------------------------

def _run_args(run_dir, *extra):
    args = ["--config", os.path.join(REPO, "genomes", "default.yaml")]
    for item in tiny_overrides():
        args += ["--set", item]
    return args + ["--run-dir", str(run_dir), "--quiet", *extra]


def _real_run(launch, run_dir, exit_tracebacks=0):
    """``python LAUNCH... <tiny run args>``: must succeed (exit 0); returns the run directory.

    No traceback may be printed, except ``exit_tracebacks`` for ``SystemExit: 0``.
    """
    code, out, err = _launch(launch + _run_args(run_dir), timeout=RUN_TIMEOUT_S)
    assert code == 0, (code, out[-3000:], err[-5000:])
    text = out + err
    assert text.count("Traceback") == exit_tracebacks == text.count("\nSystemExit: 0\n"), text[-5000:]
    return run_dir


@pytest.fixture(scope="module")
def scoop_module_run(tmp_path_factory):
    """The documented launch: ``python -m scoop -n 2 -m learngene_ea.run ...``."""
    _installed_pth()
    return _real_run(["-m", "scoop", "-n", "2", "-m", "learngene_ea.run"],
                     tmp_path_factory.mktemp("scoop-module") / "run")


@pytest.fixture(scope="module")
def serial_run(tmp_path_factory):
    """``python -m learngene_ea.run ...``: one process, no SCOOP."""
    return _real_run(["-m", "learngene_ea.run"], tmp_path_factory.mktemp("serial") / "run")


@pytest.fixture(scope="module")
def scoop_file_run(tmp_path_factory):
    """SCOOP's own way: ``python -m scoop -n 2 learngene_ea/run.py ...`` (no traceback either:
    run.py only calls ``sys.exit`` for a failure, which SCOOP would print as a traceback)."""
    return _real_run(["-m", "scoop", "-n", "2", os.path.join("learngene_ea", "run.py")],
                     tmp_path_factory.mktemp("scoop-file") / "run")


def _logbook(run_dir):
    with open(os.path.join(run_dir, "logbook.jsonl"), encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def _check_run_outputs(run_dir):
    for name in ("learngene.pt", "logbook.jsonl", "summary.json", "checkpoints/latest.pkl"):
        assert os.path.isfile(os.path.join(run_dir, name)), name
    assert [r["gen"] for r in _logbook(run_dir)] == [0, 1, 2]
    with open(os.path.join(run_dir, "summary.json"), encoding="utf-8") as f:
        assert json.load(f)["generations_run"] == 3


def _without_timings(records):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in records]


@pytest.mark.slow
def test_real_run_under_scoop_as_a_module(scoop_module_run):
    _check_run_outputs(scoop_module_run)
    # Every evaluation tells where it ran: a device string, set by learngene_ea.parallel.scoop_engine' index.
    from learngene_ea.io.checkpoint import load_checkpoint

    payload = load_checkpoint(os.path.join(scoop_module_run, "checkpoints", "latest.pkl"))
    devices = {ind.evaluation["device"] for ind in payload["population"]}
    assert devices and all(isinstance(d, str) for d in devices), devices
    import torch

    if torch.cuda.is_available():
        assert all(d.startswith("cuda:") for d in devices), devices
    else:
        assert devices == {"cpu"}


@pytest.mark.slow
def test_real_run_without_scoop(serial_run):
    _check_run_outputs(serial_run)


@pytest.mark.slow
def test_real_run_under_scoop_as_a_file(scoop_file_run):
    _check_run_outputs(scoop_file_run)


@pytest.mark.slow
def test_fitness_is_the_same_serially_and_under_scoop(serial_run, scoop_module_run, scoop_file_run):
    """Every evaluation is seeded from (run seed, generation, id) and the loop is deterministic:
    which process evaluates an individual changes nothing (for one ``runtime.threads``)."""
    serial = _without_timings(_logbook(serial_run))
    assert _without_timings(_logbook(scoop_module_run)) == serial
    assert _without_timings(_logbook(scoop_file_run)) == serial


@pytest.mark.slow
def test_scoop_launcher_exits_with_the_run_status(tmp_path, scoop_module_run):
    # Success: 0 (scoop_module_run asserted it). Bad input: the run's status 2 and its one
    # sentence, no traceback (SCOOP 0.7.2's launcher alone would exit 0).
    code, out, err = _launch(["-m", "scoop", "-n", "2", "-m", "learngene_ea.run",
                              "--set", "ea.population_size=-1", "--run-dir", str(tmp_path / "bad")])
    assert code == 2, (code, out[-3000:], err[-5000:])
    assert "error: 'ea.population_size' is -1; it must be at least 2." in out + err
    assert "Traceback" not in out + err
    assert not (tmp_path / "bad").exists()


# --- the transfer evaluation spread over SCOOP processes -----------------------------------------

def _transfer(launch, learngene, out_dir):
    args = ["--learngene", learngene, "--out", str(out_dir), "--quiet",
            "--config", os.path.join(REPO, "genomes", "default.yaml")]
    overrides = tiny_overrides() + ["transfer.episodes=3", "transfer.steps=3", "transfer.shots=[1]",
                                    "transfer.limited_data=0", "transfer.n_query=5", "transfer.pretrain_epochs=1",
                                    "task.batch_size=64"]
    for item in overrides:
        args += ["--set", item]
    args += ["--set", f"transfer.cache_dir={out_dir.parent / 'pretrained-cache'}"]  # one cache for both launches
    code, out, err = _launch(launch + args, timeout=RUN_TIMEOUT_S)
    assert code == 0, (code, out[-3000:], err[-5000:])
    assert "Traceback" not in out + err, err[-5000:]
    with open(os.path.join(out_dir, "transfer.json"), encoding="utf-8") as f:
        return json.load(f), out


def _episode_numbers(results):
    keep = ("accuracies", "prototype_before_accuracies", "final_losses", "init_seeds", "episode_digests", "params")
    return [(row["method"], row["arch"], {s: {k: r[k] for k in keep} for s, r in row["results"].items()})
            for row in results["rows"]]


@pytest.mark.slow
def test_transfer_episodes_spread_over_scoop_give_the_numbers_of_one_process(serial_run, tmp_path):
    """``python -m scoop -n 2 -m learngene_ea.transfer``: the origin pre-trains, every process takes
    episodes, and each (method, episode) is seeded by the episode: the table is the one-process table."""
    _installed_pth()
    learngene = os.path.join(serial_run, "learngene.pt")
    alone, _ = _transfer(["-m", "learngene_ea.transfer"], learngene, tmp_path / "alone")
    spread, log = _transfer(["-m", "scoop", "-n", "2", "-m", "learngene_ea.transfer"], learngene, tmp_path / "spread")
    assert "spread over 2 SCOOP processes" in log
    assert spread["pretrained"]["reused"] is True  # cached by the first evaluation in the shared cache folder
    assert _episode_numbers(spread) == _episode_numbers(alone)


@pytest.mark.slow
def test_a_running_evaluation_stays_in_its_workers_status_reports():
    """SCOOP 0.7.2's status reports replace the broker's record of a worker's futures with ids the
    broker cannot match (unpickled, running future left out), so a waiting origin is told a
    running evaluation is lost and computes it again ("Lost track of future ... Resending it").
    learngene-ea's map keeps the running future in the reports under the id the broker matches."""
    _installed_pth()
    code, out, err = _launch(["-m", "scoop", "-n", "2", "-m", "lgea_scoop_demo.visible"])
    assert code == 0, (code, out[-3000:], err[-5000:])
    line = next(line for line in out.splitlines() if line.startswith("VISIBLE_RESULT "))
    result = json.loads(line[len("VISIBLE_RESULT "):])
    assert not any(call["reported"] for call in result["plain"])  # SCOOP's own behaviour
    assert all(call["reported"] for call in result["watched"])


@pytest.mark.slow
def test_a_module_scoop_abandons_mid_run_exits_1_with_one_sentence():
    """When a worker dies, SCOOP may shut its pool down and end the module with GreenletExit, no
    error of its own: the launcher must not report that as success (it used to exit 0)."""
    _installed_pth()
    code, out, err = _launch(["-m", "scoop", "-n", "2", "-m", "lgea_scoop_demo.abandoned"])
    assert "ABANDONED_STARTED" in out
    assert code == 1, (code, out[-2000:], err[-3000:])
    assert ("error: SCOOP shut its pool down before lgea_scoop_demo.abandoned finished (a worker exited "
            "unexpectedly: a host died?)") in err


# --- Ctrl-C under SCOOP: the module's one sentence and status 130 (issue #36, F19) ----------------------

def _interrupted_launch(args, started, tmp_path, timeout=RUN_TIMEOUT_S):
    """Launch ``python ARGS`` in its own process group, wait for ``started`` on its stdout, then Ctrl-C it
    as a terminal does (SIGINT to the whole group: launcher, origin, workers). Returns (status, out, err)."""
    import time

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (DEMO_DIR, env.get("PYTHONPATH")) if p)
    with open(tmp_path / "out.txt", "w") as out, open(tmp_path / "err.txt", "w") as err:
        proc = subprocess.Popen([sys.executable] + args, cwd=REPO, env=env, stdout=out, stderr=err, text=True,
                                start_new_session=True)
    deadline = time.monotonic() + timeout
    try:
        while started not in (tmp_path / "out.txt").read_text():
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "err.txt").read_text()[-3000:]
            time.sleep(0.2)
        time.sleep(1.0)
        os.killpg(proc.pid, signal.SIGINT)
        code = proc.wait(timeout=LAUNCH_TIMEOUT_S)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # whatever is left of the group (nothing, when all is well)
        except ProcessLookupError:
            pass
    return code, (tmp_path / "out.txt").read_text(), (tmp_path / "err.txt").read_text()


@pytest.mark.slow
def test_ctrl_c_while_the_origin_waits_on_workers_gives_the_modules_sentence_and_130(tmp_path):
    _installed_pth()
    code, out, err = _interrupted_launch(["-m", "scoop", "-n", "2", "-m", "lgea_scoop_demo.interrupted"],
                                         "INTERRUPTED_STARTED", tmp_path)
    assert code == 130, (code, out[-2000:], err[-3000:])
    assert "interrupted: DEMO_SENTENCE" in err and "Traceback" not in err and "INTERRUPTED_NOT" not in out


@pytest.mark.slow
def test_ctrl_c_of_a_run_under_scoop_says_what_is_kept_as_a_serial_run_does(tmp_path):
    _installed_pth()
    run_dir = tmp_path / "run"
    args = _run_args(run_dir, "--set", "ea.generations=50", "--set", "ea.patience=100")
    code, out, err = _interrupted_launch(["-m", "scoop", "-n", "2", "-m", "learngene_ea.run", *args], "gen   0",
                                         tmp_path)
    assert code == 130, (code, out[-2000:], err[-3000:])
    assert f"interrupted: the last finished generation is in {run_dir}" in err
    assert f"continue with --resume {run_dir}." in err and "Traceback" not in err


def test_the_launcher_waits_for_an_interrupted_origins_status(tmp_path, monkeypatch):
    """SCOOP's launcher is done at once on Ctrl-C; the origin, still saying what its run keeps, writes
    its status after: the launcher waits for it while the origin lives, and a dead origin's is 1."""
    import threading

    path = tmp_path / "status"
    monkeypatch.setenv(hook.EXIT_FILE_VARIABLE, str(path))
    path.write_text("")
    assert hook.record_exit_status(f"{hook.RUNNING} {os.getpid()}")
    assert path.read_text() == f"running {os.getpid()}"
    threading.Timer(0.3, hook.record_exit_status, (130,)).start()
    assert hook._await_status(str(path), grace_s=10) == "130"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    path.write_text(f"running {dead.stdout.strip()}")
    assert hook._await_status(str(path), grace_s=10) == f"running {dead.stdout.strip()}"  # read as 1


def test_the_launcher_never_reads_a_half_written_status(tmp_path, monkeypatch):
    """The origin's status is renamed over the file, not truncated and rewritten: a launcher polling
    it sees the old status or the new one, never "" (which it would take for success)."""
    path = tmp_path / "status"
    path.write_text("running 1")
    monkeypatch.setenv(hook.EXIT_FILE_VARIABLE, str(path))
    writer = subprocess.Popen([sys.executable, "-c", (
        "from learngene_ea import _scoop_module_hook as hook\n"
        "for i in range(1000):\n"
        "    hook.record_exit_status(130 if i % 2 else 'running 1')\n")])
    seen = set()
    while writer.poll() is None:
        seen.add(path.read_text())
    assert writer.returncode == 0
    assert seen <= {"running 1", "130"}
    assert path.read_text() == "130" and list(tmp_path.iterdir()) == [path]
