"""bench/gpu_check.sh and its preparation, as far as a CPU can check them: both scripts parse, the
wheels prepared cover every dependency the GPU machine lacks (at the development venv's versions),
and the check itself runs through on the CPU (DEVICE=cpu) and writes its JSON and log."""
import ast
import importlib.metadata as metadata
import json
import os
import re
import subprocess
import sys

import pytest

from conftest import ROOT

PREPARE = os.path.join(ROOT, "bench", "prepare_gpu_check.sh")
CHECK = os.path.join(ROOT, "bench", "gpu_check.sh")
# What the GPU machine's Python 3.12 already has (and brings its own dependencies for).
ON_THE_GPU_MACHINE = {"torch", "torchvision", "numpy", "pyyaml", "matplotlib", "tqdm", "tensorboard", "pytest",
                      "pillow"}  # pillow: torchvision and matplotlib require it
EXTRAS = {"ray", "tensorboard", "safetensors"}  # optional, imported only when a recipe or a call asks for them


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def prepared_pins() -> dict:
    """name -> version of every package prepare_gpu_check.sh fetches (wheels and built sdists)."""
    text = open(PREPARE, encoding="utf-8").read()
    pins = {}
    for variable in ("PACKAGES", "SDIST_ONLY"):
        listed = re.search(rf'^{variable}="([^"]*)"', text, re.M).group(1)
        pins.update((canonical(n.split("==")[0]), n.split("==")[1]) for n in listed.split())
    return pins


def requirements(distribution: str) -> set:
    """The distributions ``distribution`` requires (no extras, no markers that exclude Linux CPython)."""
    found = set()
    for requirement in metadata.requires(distribution) or ():
        name, _, marker = requirement.partition(";")
        if "extra ==" in marker or "PyPy" in marker and "!=" not in marker:
            continue
        found.add(canonical(re.split(r"[\s<>=!~\[(]", name.strip(), maxsplit=1)[0]))
    return found


def test_both_scripts_parse():
    for script in (PREPARE, CHECK):
        assert subprocess.run(["bash", "-n", script]).returncode == 0, script


def test_the_wheels_cover_every_dependency_the_gpu_machine_lacks_at_the_venvs_versions():
    """Everything our install_requires pulls in, transitively, minus what the GPU machine has."""
    needed, queue = set(), [canonical(r) for r in requirements("learngene-ea")]
    while queue:
        name = queue.pop()
        if name in needed or name in ON_THE_GPU_MACHINE:
            continue
        needed.add(name)
        queue += requirements(name)
    pins = prepared_pins()
    assert needed <= set(pins), needed - set(pins)
    for name, version in pins.items():
        assert metadata.version(name) == version, name


def test_every_third_party_import_of_the_package_is_prepared_or_on_the_gpu_machine():
    """Statically: each module the package imports comes from the standard library, itself, the
    GPU machine, the prepared wheels or an optional extra."""
    by_module = metadata.packages_distributions()
    provided = set(prepared_pins()) | ON_THE_GPU_MACHINE | EXTRAS
    for folder, _, files in os.walk(os.path.join(ROOT, "learngene_ea")):
        for file in (f for f in files if f.endswith(".py")):
            tree = ast.parse(open(os.path.join(folder, file), encoding="utf-8").read())
            for node in ast.walk(tree):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                    [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module else []
                for top in {n.split(".")[0] for n in names}:
                    if top in sys.stdlib_module_names or top == "learngene_ea":
                        continue
                    dists = {canonical(d) for d in by_module.get(top, [top])}
                    assert dists & provided, f"{file} imports {top} ({dists}), which the GPU machine would lack"


def test_the_check_refuses_an_unknown_step(tmp_path):
    from bench.gpu_check import main

    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path), "--steps", "tiny_run,warp_drive"])


@pytest.mark.slow
def test_the_check_runs_through_on_the_cpu_and_writes_its_json_and_log(tmp_path):
    """gpu_check.sh with DEVICE=cpu: a tiny run, its resume (logbook identical to one made in one
    go), a batched run and a transfer, each passing with its seconds and numbers."""
    out = tmp_path / "out"
    env = dict(os.environ, SKIP_INSTALL="1", DEVICE="cpu", PYTHON=sys.executable, OUT=str(out),
               STEPS="environment,tiny_run,resume,batched,transfer", PYTHONPATH=ROOT)
    done = subprocess.run(["bash", CHECK], cwd=ROOT, env=env, capture_output=True, text=True, timeout=400)
    results = json.loads((out / "gpu-check.json").read_text())
    assert done.returncode == 0 and results["passed"], (done.stdout, (out / "gpu-check.log").read_text()[-3000:])
    steps = results["steps"]
    assert list(steps) == ["environment", "tiny_run", "resume", "batched", "transfer"]
    assert all(step["ok"] and step["seconds"] > 0 for step in steps.values())
    assert steps["resume"]["logbooks_identical"] is True
    # the batched runs (fp32 and runtime.precision bf16) stacked every evaluation
    assert min(steps["batched"]["fp32_stacked"]) > 1 and min(steps["batched"]["bf16_stacked"]) > 1
    assert steps["batched"]["bf16_numerics"]["precision"] == "bf16"
    assert steps["batched"]["bf16_generation0_accuracy_gap_vs_fp32"] <= 0.1
    assert steps["tiny_run"]["devices"] == ["cpu"] and steps["tiny_run"]["numerics"]["deterministic"] is True
    assert steps["transfer"]["means"]["cpu"]
    log = (out / "gpu-check.log").read_text()
    assert "[tiny_run] PASS" in log and "-m learngene_ea.run" in log
