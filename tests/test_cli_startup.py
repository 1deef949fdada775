"""``--help`` answers before torch is imported (the time it takes is measured by ``python -m bench.cli_startup``)."""
import subprocess
import sys

import pytest

from conftest import ROOT

PROBE = """
import runpy, sys
sys.argv = [{module!r}, "--help"]
try:
    runpy.run_module({module!r}, run_name="__main__", alter_sys=True)
except SystemExit as exit:
    assert exit.code in (0, None), exit.code
print("torch imported:", "torch" in sys.modules)
"""


@pytest.mark.parametrize("module", ["learngene_ea.run", "learngene_ea.study", "learngene_ea.transfer"])
def test_help_imports_no_torch(module):
    done = subprocess.run([sys.executable, "-c", PROBE.format(module=module)], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "usage: python -m " + module in done.stdout
    assert done.stdout.rstrip().endswith("torch imported: False")


def test_importing_the_package_makes_the_deap_classes_without_torch():
    code = ("import sys, learngene_ea; from deap import creator; "
            "print(hasattr(creator, 'LearngeneIndividual'), 'torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["True", "False"], done.stderr
