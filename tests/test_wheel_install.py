"""After ``pip install`` of the wheel (not editable), the command line finds the shipped recipes from
any folder: ``python -m learngene_ea.run`` in an empty folder runs what genomes/default.yaml says.

The wheel is built offline from a copy of the sources and installed with ``--no-deps`` into a fresh
venv that sees this environment's packages (torch, DEAP, ...) through a ``.pth`` file."""
import os
import shutil
import site
import subprocess
import sys

import pytest
import yaml

from conftest import ROOT
from learngene_ea.config.loading import load_config, to_dict

pytestmark = pytest.mark.slow


def _run(args, **kwargs):
    result = subprocess.run(args, capture_output=True, text=True, timeout=120, **kwargs)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(the venv's python, an empty folder, the environment to run it in)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in ("setup.py", "pyproject.toml", "README.md"):
        shutil.copy(os.path.join(ROOT, name), src / name)
    for name in ("learngene_ea", "genomes"):
        shutil.copytree(os.path.join(ROOT, name), src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index",
          "-w", str(tmp / "dist"), str(src)])
    (wheel,) = (tmp / "dist").glob("learngene_ea-*.whl")
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = str(venv / ("Scripts" if os.name == "nt" else "bin") / "python")
    _run([sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps", "--no-index", str(wheel)])
    purelib = _run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip()
    ours = [p for p in [*site.getsitepackages(), site.getusersitepackages()] if os.path.isdir(p)]
    with open(os.path.join(purelib, "this-environments-packages.pth"), "w", encoding="utf-8") as f:
        f.write("\n".join(ours) + "\n")
    empty = tmp / "elsewhere"
    empty.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    return python, empty, env, str(venv)


def test_the_installed_command_without_config_runs_the_shipped_default_from_any_folder(installed):
    python, empty, env, venv = installed
    result = _run([python, "-m", "learngene_ea.run", "--print-config"], cwd=empty, env=env)
    assert yaml.safe_load(result.stdout) == to_dict(load_config(os.path.join(ROOT, "genomes", "default.yaml")))
    assert f"the shipped recipe 'default' ({venv}" in result.stderr  # the wheel's copy, not this checkout's
    assert os.listdir(empty) == []


def test_the_installed_command_finds_a_shipped_recipe_by_name_from_any_folder(installed):
    python, empty, env, _ = installed
    result = _run([python, "-m", "learngene_ea.run", "--config", "cifarfs-vgg11", "--print-config"], cwd=empty,
                  env=env)
    assert yaml.safe_load(result.stdout) == to_dict(load_config(os.path.join(ROOT, "genomes", "cifarfs-vgg11.yaml")))
