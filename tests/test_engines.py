"""runtime.backend picks the engine in one place (learngene_ea.parallel.engines); what a launch cannot give is refused."""
import sys

from conftest import tiny_overrides
from learngene_ea.cli import run as run_module
from learngene_ea.config.loading import load_config
from learngene_ea.parallel.engines import parallel_map, process_count, start_engine


def run_args(tmp_path, *settings):
    overrides = tiny_overrides() + list(settings)
    return ["--run-dir", str(tmp_path / "run")] + [a for item in overrides for a in ("--set", item)]


def test_auto_outside_scoop_is_one_process_with_the_builtin_map():
    runtime = load_config(None, ["runtime.backend=auto"]).runtime
    assert parallel_map(runtime) is map
    assert process_count(runtime) == 1
    assert start_engine(runtime) == "one process (no SCOOP)"


def test_serial_is_the_builtin_map():
    assert parallel_map(load_config(None, ["runtime.backend=serial"]).runtime) is map


def test_scoop_without_a_scoop_launch_is_refused_before_any_compute(tmp_path, capsys):
    assert run_module.main(run_args(tmp_path, "runtime.backend=scoop")) == 2
    assert capsys.readouterr().err == (
        "error: runtime.backend is 'scoop' but this process was not launched with `python -m scoop`; launch it so "
        "(python -m scoop -n 8 -m learngene_ea.run ...) or set runtime.backend=auto.\n")
    assert not (tmp_path / "run").exists()


def test_ray_without_ray_installed_is_refused_in_one_sentence(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as where it is not installed
    assert run_module.main(run_args(tmp_path, "runtime.backend=ray")) == 2
    assert capsys.readouterr().err == ("error: runtime.backend is 'ray' but Ray is not installed; install the extra "
                                       "with pip install -e \".[ray]\" or set runtime.backend=auto.\n")
    assert not (tmp_path / "run").exists()


def test_an_unknown_backend_is_a_recipe_error(tmp_path, capsys):
    assert run_module.main(run_args(tmp_path, "runtime.backend=dask")) == 2
    assert "'runtime.backend' is 'dask'; it must be one of: auto, scoop, ray, serial." in capsys.readouterr().err
