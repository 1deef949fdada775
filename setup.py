"""Packaging for learngene-ea.

Besides the package, every install (``pip install .`` and ``pip install -e .``) puts
``learngene_ea_scoop_hook.pth`` into site-packages: it is what lets
``python -m scoop -n 8 -m learngene_ea.run ...`` work (SCOOP itself only runs files); see
``learngene_ea/_scoop_module_hook.py``.
"""
import os
import re

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py as _build_py

HERE = os.path.dirname(os.path.abspath(__file__))

HOOK_PTH_NAME = "learngene_ea_scoop_hook.pth"
# One line that site.py executes at every interpreter start-up. Unless the interpreter is
# `python -m ...scoop...` it only compares sys.argv[0]; otherwise it loads the hook file by path
# (without importing the learngene_ea package, which imports torch) and calls install(), which
# decides precisely. Any error is swallowed: a broken hook must never break Python.
# (Named to sort after setuptools' "__editable__.*.pth", whose finder locates the package.)
HOOK_PTH_LINE = (
    "import sys; exec(\"try:\\n"
    " import importlib.util as u, os\\n"
    " n = '_learngene_ea_scoop_hook'\\n"
    " m = sys.modules.get(n)\\n"
    " if m is None:\\n"
    "  s = u.spec_from_file_location(n, os.path.join("
    "u.find_spec('learngene_ea').submodule_search_locations[0], '_scoop_module_hook.py'))\\n"
    "  m = u.module_from_spec(s); sys.modules[n] = m; s.loader.exec_module(m)\\n"
    " m.install()\\n"
    "except Exception:\\n"
    " pass\\n\") "
    "if sys.argv[:1] == ['-m'] and any(a.endswith(('scoop', 'scoop.__main__')) "
    "for a in getattr(sys, 'orig_argv', ())) else None\n"
)


def _write_hook_pth(directory):
    path = os.path.join(directory, HOOK_PTH_NAME)
    os.makedirs(directory, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(HOOK_PTH_LINE)
    return path


class build_py(_build_py):
    """Also writes the hook's .pth at the root of build_lib, i.e. of the wheel (regular installs)."""

    def run(self):
        super().run()
        if not getattr(self, "editable_mode", False):
            _write_hook_pth(self.build_lib)

    def get_outputs(self, include_bytecode=1):
        outputs = super().get_outputs(include_bytecode)
        if not getattr(self, "editable_mode", False):
            outputs.append(os.path.join(self.build_lib, HOOK_PTH_NAME))
        return outputs


cmdclass = {"build_py": build_py}

try:  # PEP 660 editable installs (setuptools >= 64; what `pip install -e .` uses)
    from setuptools.command.editable_wheel import editable_wheel as _editable_wheel
except ImportError:  # pragma: no cover - older setuptools
    _editable_wheel = None

if _editable_wheel is not None:

    class _StrategyWithHookPth:
        """Wraps setuptools' editable strategy: the editable wheel also gets the hook's .pth."""

        def __init__(self, strategy):
            self._strategy = strategy

        def __enter__(self):
            self._strategy.__enter__()
            return self

        def __exit__(self, *exc_info):
            return self._strategy.__exit__(*exc_info)

        def __call__(self, wheel, files, mapping):
            self._strategy(wheel, files, mapping)
            wheel.writestr(HOOK_PTH_NAME, HOOK_PTH_LINE.encode("utf-8"))

    class editable_wheel(_editable_wheel):
        def _select_strategy(self, *args, **kwargs):
            return _StrategyWithHookPth(super()._select_strategy(*args, **kwargs))

    cmdclass["editable_wheel"] = editable_wheel

from setuptools.command.develop import develop as _develop  # noqa: E402

if hasattr(_develop, "install_for_development"):
    # setuptools < 80 in the user's environment, with `wheel` installed and no pyproject.toml:
    # pip then runs the legacy `setup.py develop` (an .egg-link), not an editable wheel. (From
    # setuptools 80 on, develop calls pip, which builds the editable wheel above.)

    class develop(_develop):
        def run(self):
            super().run()
            path = os.path.join(self.install_dir, HOOK_PTH_NAME)
            if self.uninstall:
                if os.path.exists(path):
                    os.remove(path)
            else:
                _write_hook_pth(self.install_dir)

    cmdclass["develop"] = develop


def _version():
    with open(os.path.join(HERE, "learngene_ea", "__init__.py"), encoding="utf-8") as f:
        return re.search(r'^__version__ = "([^"]+)"', f.read(), re.M).group(1)


setup(
    name="learngene-ea",
    version=_version(),
    description="Genetic Transfer Learning (learngenes) on DEAP, PyTorch and SCOOP",
    license="MIT",
    # the shipped recipes: the repository's genomes/ folder, installed as learngene_ea/genomes/ (one copy;
    # learngene_ea.config.recipes finds either)
    packages=find_packages(exclude=["tests", "tests.*", "bench", "bench.*"]) + ["learngene_ea.genomes"],
    package_dir={"learngene_ea.genomes": "genomes"},
    package_data={"learngene_ea.data": ["splits/*.txt"], "learngene_ea.genomes": ["*.yaml"]},
    install_requires=[
        "deap",
        "torch>=2.1",
        "torchvision>=0.16",
        "numpy",
        "scoop",
        "pyyaml",
        "tqdm",
        "matplotlib",
    ],
    # test: setuptools and wheel build the wheel a test installs (offline, --no-build-isolation)
    # test: safetensors too, so that the suite writes and reads that format (an optional extra for users)
    extras_require={"test": ["pytest", "setuptools>=64", "wheel", "safetensors"], "ray": ["ray>=2.9"],
                    "tensorboard": ["tensorboard"], "safetensors": ["safetensors"]},
    python_requires=">=3.10",
    cmdclass=cmdclass,
)
