"""Lets ``python -m scoop [SCOOP options] -m MODULE [args]`` run MODULE as ``python -m MODULE`` would.

SCOOP 0.7.2 only starts a *file*: ``python -m scoop -n 8 script.py args``. Its launcher parses
``sys.argv`` with argparse, and the origin worker runs the file with ``runpy.run_path(file,
run_name="__main__")`` while every other worker loads it as a module named ``SCOOP_WORKER``. This
file makes the documented ``python -m scoop -n 8 -m learngene_ea.run --config X`` work, in three
roles:

1. **Hook** (``install``). ``learngene_ea_scoop_hook.pth``, put in site-packages by ``setup.py``,
   loads this file (without importing the ``learngene_ea`` package, which imports torch) only when
   the interpreter was started as ``python -m scoop``; every other process pays one comparison of
   ``sys.argv[0]``. ``install`` puts a one-shot finder first on ``sys.meta_path``; when ``runpy``
   looks up ``scoop.__main__`` (after ``sys.path`` is final, before SCOOP parses its arguments),
   the finder removes itself and rewrites ``-m MODULE`` to ``<this file> MODULE``, but only when
   ``-m`` stands where SCOOP expects the executable (checked with SCOOP's own parser), and MODULE
   can be found (looked up without importing it). In any other case, or on any error, ``sys.argv``
   is left as it was and SCOOP behaves as before.
2. **Origin** (this file run as ``__main__`` by SCOOP): runs MODULE with
   ``runpy.run_module(MODULE, run_name="__main__", alter_sys=True)``, so MODULE sees what
   ``python -m MODULE`` gives it (``sys.argv[0]`` its file, relative imports, ``__spec__``).
3. **Worker** (this file loaded as ``SCOOP_WORKER``): executes MODULE's code as the
   ``SCOOP_WORKER`` module (with MODULE's ``__package__``/``__spec__``, so relative imports work),
   which is what SCOOP does with a script: functions and classes defined in MODULE and pickled as
   ``__main__.name`` by the origin resolve on the workers, and objects the workers send back
   resolve on the origin.

Keep MODULE's top level light: like a SCOOP script, it runs on every worker (not its ``__main__`` block).
"""
import os
import sys
import threading

SCOOP_MAIN_MODULES = ("scoop", "scoop.__main__")
WORKER_MODULE_NAME = "SCOOP_WORKER"  # the name SCOOP's bootstrap loads the executable under
HOOK_FILE = os.path.abspath(__file__)

# CPython's short options that take a value (``python -X dev``), besides -c and -m.
_PYTHON_OPTIONS_WITH_VALUE = "WX"


def python_main_module(orig_argv):
    """The module the interpreter was asked to run with ``-m``, from ``sys.orig_argv``; else None."""
    args = list(orig_argv[1:])
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--check-hash-based-pycs":
            i += 2
            continue
        if arg.startswith("--"):
            if arg == "--":
                return None
            i += 1
            continue
        if not arg.startswith("-") or arg == "-":
            return None  # a script file, or the program on standard input
        for j in range(1, len(arg)):
            flag = arg[j]
            if flag in "cm":
                value = arg[j + 1:] or (args[i + 1] if i + 1 < len(args) else None)
                return value if flag == "m" else None
            if flag in _PYTHON_OPTIONS_WITH_VALUE:
                if j + 1 == len(arg):
                    i += 1  # the value is the next argument
                break
        i += 1
    return None


def find_module_spec(name):
    """The spec of module ``name``, found without importing it or its parent packages; else None."""
    import importlib.machinery
    import importlib.util

    parts = name.split(".")
    if not all(part.isidentifier() for part in parts):
        return None
    spec = importlib.util.find_spec(parts[0])  # a top-level name: finders only, nothing executed
    for depth in range(2, len(parts) + 1):
        if spec is None or spec.submodule_search_locations is None:
            return None
        spec = importlib.machinery.PathFinder.find_spec(
            ".".join(parts[:depth]), list(spec.submodule_search_locations))
    return spec


def _parses_to(parser, argv):
    """``parser.parse_args(argv)`` with nothing printed; None where argparse would exit."""
    import contextlib
    import io

    sink = io.StringIO()
    try:
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            return parser.parse_args(argv)
    except (Exception, SystemExit):
        return None


def rewrite_argv(argv, parser, hook_file=HOOK_FILE, module_exists=None):
    """The SCOOP launcher's arguments with ``-m MODULE`` replaced by ``hook_file MODULE``.

    ``argv`` is ``sys.argv[1:]`` of ``python -m scoop``; ``parser`` is SCOOP's argument parser
    (``scoop.launcher.makeParser()``). Returns None, meaning "leave the arguments alone", unless
    the first ``-m MODULE`` (or ``-mMODULE``) stands where SCOOP expects the executable and
    ``module_exists(MODULE)`` (default: :func:`find_module_spec` finds it).
    """
    for i, arg in enumerate(argv):
        if arg == "--":
            return None
        if arg == "-m":
            if i + 1 == len(argv):
                return None
            module, rest = argv[i + 1], list(argv[i + 2:])
            break
        if arg.startswith("-m") and not arg.startswith("--"):
            module, rest = arg[2:], list(argv[i + 1:])
            break
    else:
        return None
    if not module or module.startswith("-"):
        return None
    candidate = list(argv[:i]) + [hook_file, module] + rest
    parsed = _parses_to(parser, candidate)
    if parsed is None or parsed.executable != hook_file or list(parsed.args[:1]) != [module]:
        return None  # "-m" is not in the executable's place (e.g. it belongs to the script's args)
    exists = module_exists if module_exists is not None else find_module_spec
    if not exists(module):
        sys.stderr.write(
            "learngene_ea: cannot run '-m {0}' under SCOOP: no module named {0!r} "
            "(is the package installed, e.g. `pip install -e .`?)\n".format(module))
        return None
    return candidate


def _rewrite_launcher_argv():
    """Rewrite ``sys.argv`` of the ``python -m scoop`` launcher (called by the finder)."""
    if sys.argv[:1] != ["-m"]:
        return  # runpy sets argv[0] once the main module is found: this is some other lookup
    if not any(a == "-m" or (a.startswith("-m") and not a.startswith("--")) for a in sys.argv[1:]):
        return  # nothing to do: don't even import SCOOP's launcher early
    import scoop.launcher

    new_argv = rewrite_argv(sys.argv[1:], scoop.launcher.makeParser())
    if new_argv is not None:
        sys.argv[1:] = new_argv
        _pass_exit_status_through()


EXIT_FILE_VARIABLE = "LEARNGENE_EA_SCOOP_EXIT_FILE"


def _pass_exit_status_through():
    """Make the launcher exit with the module's exit status (SCOOP 0.7.2 always exits 0).

    The origin (started by this launcher, on this host, with this environment) writes a
    non-zero status into a file named by an environment variable; at exit the launcher reads
    it and exits with it. Without the file (e.g. an origin on another host) nothing changes.
    """
    import atexit
    import tempfile

    fd, path = tempfile.mkstemp(prefix="learngene-ea-scoop-exit-")
    os.close(fd)
    os.environ[EXIT_FILE_VARIABLE] = path

    def exit_with_module_status():
        try:
            text = _await_status(path)
            os.unlink(path)
        except OSError:
            return
        if text.startswith(RUNNING):  # the origin ended without a status (killed): a failure, as before
            text = "1"
        if text and text != "0":
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(int(text) if text.lstrip("-").isdigit() else 1)

    atexit.register(exit_with_module_status)


RUNNING = "running"  # the status file's text while the origin runs: "running <pid>"
ORIGIN_GRACE_S = 30.0  # how long the launcher waits for an interrupted origin to say what it keeps


def _await_status(path, grace_s=None) -> str:
    """The origin's status, once it has one: on Ctrl-C SCOOP's launcher is done at once (it only
    terminates its children), while the origin is still saying what its run keeps."""
    import time

    deadline = time.monotonic() + (ORIGIN_GRACE_S if grace_s is None else grace_s)
    while True:
        with open(path) as f:
            text = f.read().strip()
        if not text.startswith(RUNNING) or time.monotonic() > deadline or not _alive(text[len(RUNNING):]):
            return text
        time.sleep(0.05)


def _alive(pid_text) -> bool:
    try:
        os.kill(int(pid_text), 0)
    except (ValueError, ProcessLookupError):
        return False
    except OSError:  # another user's process: it exists
        pass
    return True


def record_exit_status(code) -> bool:
    """Origin side of :func:`_pass_exit_status_through`; True when the launcher will get it."""
    path = os.environ.get(EXIT_FILE_VARIABLE)
    if not path or not os.path.exists(path):
        return False
    status = code if isinstance(code, int) or str(code).startswith(RUNNING) else 1  # sys.exit("message"): 1
    partial = f"{path}.{os.getpid()}.{threading.get_ident()}"  # renamed over it: the launcher never reads ""
    with open(partial, "w") as f:
        f.write(str(status))
    os.replace(partial, path)
    return True


class _ScoopMainFinder:
    """One-shot ``sys.meta_path`` entry: acts when ``scoop.__main__`` is looked up, finds nothing."""

    learngene_ea_scoop_hook = True  # marker, so a second install() (or copy of this file) skips

    def find_spec(self, fullname, path=None, target=None):
        if fullname == "scoop.__main__":
            try:
                sys.meta_path.remove(self)
            except ValueError:
                pass
            try:
                _rewrite_launcher_argv()
            except Exception:
                pass
        return None


def install():
    """Arm the hook if this interpreter is ``python -m scoop``; otherwise do nothing. Never raises."""
    try:
        if python_main_module(getattr(sys, "orig_argv", ())) not in SCOOP_MAIN_MODULES:
            return
        if any(getattr(f, "learngene_ea_scoop_hook", False) for f in sys.meta_path):
            return  # site processes a .pth twice where lib64 links to lib (venvs): stay idempotent
        sys.meta_path.insert(0, _ScoopMainFinder())
    except Exception:
        pass


def _forget_own_directory():
    """Drop the directory SCOOP's bootstrap appended to ``sys.path`` for this file (the package's)."""
    own_dir = os.path.dirname(HOOK_FILE)
    if sys.path and os.path.abspath(sys.path[-1]) == own_dir:
        del sys.path[-1]


def _finish(finished, status) -> None:
    if finished is not False:
        finished.append(status)
        record_exit_status(status)


def _report_abandoned(module, finished) -> None:
    """At the origin's exit: the module never returned (SCOOP shut its pool down under it)."""
    if not finished:
        sys.stdout.flush()
        sys.stderr.write(f"error: SCOOP shut its pool down before {module} finished (a worker exited "
                         "unexpectedly: a host died?); what finished is saved: continue a run with "
                         "--resume <run dir>, rerun a transfer.\n")
        sys.stderr.flush()


_INTERRUPTED = []  # the time of the origin's first Ctrl-C (or SIGTERM): process-wide, a signal handler's only memory
SECOND_SIGNAL_S = 10.0  # signals this soon after the first are ignored (below)


def _interrupts_reach_the_module():
    """Ctrl-C in the origin reaches the module's own handling, which says what its run keeps.

    The origin waits for results in SCOOP's controller greenlet, where a KeyboardInterrupt ends the
    process with SCOOP's traceback (status 1, no sentence), or runs an evaluation, whose map would
    wait for results that never come: it is thrown into the module's greenlet instead. SCOOP's
    launcher terminates the origin (SIGTERM) right after a Ctrl-C: signals in the next seconds are
    ignored while the module says what it keeps; SIGTERM alone (a batch system's limit) interrupts too.
    """
    import signal
    import time

    try:
        import greenlet
    except ImportError:
        return
    module_greenlet = greenlet.getcurrent()

    def interrupt(signum, frame):
        if _INTERRUPTED and time.monotonic() - _INTERRUPTED[0] < SECOND_SIGNAL_S:
            return
        if _INTERRUPTED:  # asked again, later: stop now
            os._exit(130)
        _INTERRUPTED.append(time.monotonic())
        if module_greenlet.dead:  # the module has ended: the origin is on its way out
            return
        if greenlet.getcurrent() is module_greenlet:
            raise KeyboardInterrupt
        module_greenlet.throw(KeyboardInterrupt)  # its end exits the process (_run_as_origin)
        os._exit(130)

    try:
        signal.signal(signal.SIGINT, interrupt)
        signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread
        pass


def _run_as_origin():
    """Run ``sys.argv[1]`` as ``python -m`` would, with the remaining arguments."""
    import runpy

    _forget_own_directory()
    if len(sys.argv) < 2:
        sys.stderr.write("usage: {0} MODULE [args]\n".format(HOOK_FILE))
        sys.exit(2)
    module = sys.argv.pop(1)
    # Until the module ends, the launcher's status is "running" (1 if it never ends: when a worker dies,
    # SCOOP's broker may crash on sending it work, and SCOOP then shuts the pool down and abandons the
    # module mid-run without any error, which its launcher would report as success, status 0).
    finished = record_exit_status(f"{RUNNING} {os.getpid()}") and []
    if finished is not False:
        import atexit

        atexit.register(_report_abandoned, module, finished)
    _interrupts_reach_the_module()
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
        _finish(finished, 0)
    except KeyboardInterrupt:  # before the module's own Ctrl-C handling began (while it was imported)
        _finish(finished, 130)
        if not module.startswith("learngene_ea."):
            raise  # another module's: SCOOP's way
        sys.stderr.write("interrupted: nothing was written.\n")
    except Exception:  # the module's own traceback follows (not GreenletExit: an abandoned module)
        _finish(finished, 1)
        raise
    except SystemExit as exit_:
        _finish(finished, exit_.code if exit_.code not in (None, 0) else 0)
        # SCOOP prints any exception of the root program as a traceback, "SystemExit: 0" from a
        # plain sys.exit() or --help included. A successful exit is not an error: end quietly.
        # A failure's status goes to our launcher (which exits with it); the module already
        # said what went wrong, so no traceback either. Without our launcher: SCOOP's way.
        if exit_.code not in (None, 0):
            if isinstance(exit_.code, str):
                sys.stderr.write(exit_.code + "\n")
            if not record_exit_status(exit_.code):
                raise
    finally:
        if _INTERRUPTED:  # the broker and workers are going away under SCOOP's launcher: waiting could hang
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(finished[0] if finished else 130)


def _load_as_worker():
    """Execute module ``sys.argv[1]``'s code as the ``SCOOP_WORKER`` module (replacing this one)."""
    import importlib.util
    import types

    _forget_own_directory()
    try:  # Ctrl-C is the origin's to report; SCOOP's launcher then terminates the workers (no tracebacks)
        import signal

        signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:
        pass
    name = sys.argv[1]
    spec = importlib.util.find_spec(name)
    if spec is not None and spec.submodule_search_locations is not None:
        name += ".__main__"  # a package: run its __main__, as python -m does
        spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        raise ImportError("No module named {0!r}".format(name), name=name)
    code = spec.loader.get_code(name)
    module = types.ModuleType(WORKER_MODULE_NAME)
    module.__dict__.update(
        __file__=spec.origin, __cached__=spec.cached, __loader__=spec.loader,
        __package__=spec.parent, __spec__=spec,
    )
    sys.argv[:2] = [spec.origin]  # as on the origin: argv[0] is the module's file, then its args
    # SCOOP's loader returns whatever sys.modules holds under its name once this file has run.
    sys.modules[WORKER_MODULE_NAME] = module
    exec(code, module.__dict__)


if __name__ == "__main__":
    _run_as_origin()
elif __name__ == WORKER_MODULE_NAME:
    _load_as_worker()
