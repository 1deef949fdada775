"""The GPU check (``bench/gpu_check.sh`` runs it): every step a GPU machine must pass, in one call.

``python -m bench.gpu_check --out DIR [--device cuda] [--steps a,b] [--workers 4] [--budget 450]``
runs, each step time-boxed and every failure recorded (the next step still runs):

- ``environment``: nvidia-smi, torch / CUDA / cuDNN versions, the device;
- ``cuda_tests``: the suite's files with CUDA-only tests, ``pytest -x -q`` file by file;
- ``tiny_run``: a tiny evolution (``tests/conftest.py``'s sizes) on ``--device``;
- ``resume``: that run resumed from its generation-1 checkpoint: the logbook must be the
  uninterrupted run's (deterministic kernels);
- ``batched``: the tiny run with ``fitness.population_batch=4``: every evaluation stacked (a
  generation's 3 offspring, or 4 at the start; the vectorised step, stacked scoring and extraction),
  generation 0's accuracies within 0.02 of one-by-one training (``tests/test_batched.py``'s
  tolerance); then the same with ``runtime.precision=bf16``: stacked, recorded in the summary, its
  generation 0 within 0.1 of fp32's (bf16 keeps 8 mantissa bits);
- ``scoop``: ``python -m scoop -n WORKERS -m learngene_ea.run`` on one device: the logbook of one process;
- ``transfer``: the tiny run's learngene through ``python -m learngene_ea.transfer`` on ``--device``
  and on the CPU: the largest difference of a row's mean accuracy;
- ``traced``: a tiny evolution of ``torchvision:resnet18`` (a traced network) on ``--device``, then
  its learngene through the transfer into ResNet-34 there;
- ``bench``: ``python -m bench --only gpu`` (its JSON copied into DIR).

Writes ``DIR/gpu-check.json`` (rewritten after every step: a kill keeps what was done) and
``DIR/gpu-check.log`` (every command and its output). Exit status 0 when every step passed.
``--device cpu`` runs the same steps on a CPU: what the test suite checks.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPE = os.path.join(ROOT, "genomes", "default.yaml")
STEPS = ("environment", "cuda_tests", "tiny_run", "resume", "batched", "scoop", "transfer", "traced", "bench")
# Test files with tests that skip without CUDA (or run on CUDA when it is there: test_resume compares
# weights bit for bit on runtime.device auto).
CUDA_TEST_FILES = ("tests/test_training.py", "tests/test_batched.py", "tests/test_vectorised.py",
                   "tests/test_resume.py", "tests/test_bench_gpu.py", "tests/test_devices.py", "tests/test_numerics.py")
TINY = {"data.images_per_class": 30, "model.width": 0.25, "task.num_classes": 5, "task.images_per_class": 8,
        "task.steps": 4, "task.batch_size": 16, "fitness.episodes": 3, "fitness.n_query": 5,
        "ea.population_size": 4, "ea.tournsize": 2, "ea.schedule_generations": 2, "ea.target_fraction": 0.3,
        "transfer.after_run": "false", "runtime.threads": 1, "fitness.rescore_episodes": 0}
TINY_TRANSFER = {"transfer.episodes": 3, "transfer.steps": 3, "transfer.shots": "[1]", "transfer.limited_data": 0,
                 "transfer.n_query": 5, "transfer.pretrain_epochs": 1, "task.batch_size": 64, "runtime.threads": 1}
TRACED = {"model.family": "torchvision:resnet18", "model.width": 1, "ea.population_size": 2, "ea.elites": 1,
          "ea.generations": 1, "task.steps": 2, "fitness.episodes": 2, "fitness.inheritance": "pool",
          "pool.warm_start_fraction": 0.25}
BATCHED_TOLERANCE = 0.02
BF16_TOLERANCE = 0.1


def sets(values: dict, **extra) -> list[str]:
    """``--set key=value`` arguments."""
    args = []
    for key, value in {**values, **extra}.items():
        args += ["--set", f"{key}={value}"]
    return args


class Check:
    """The results and the log of one GPU check; every step is a method that returns its numbers."""

    def __init__(self, out: str, device: str, workers: int, budget: float):
        self.out, self.device, self.workers = out, device, workers
        self.deadline = time.monotonic() + budget
        os.makedirs(out, exist_ok=True)
        self.log_file = open(os.path.join(out, "gpu-check.log"), "a", encoding="utf-8")
        self.results = {"device": device, "started": time.strftime("%Y-%m-%d %H:%M:%S"), "steps": {}}

    def log(self, text: str) -> None:
        self.log_file.write(text.rstrip("\n") + "\n")
        self.log_file.flush()

    def path(self, *parts) -> str:
        return os.path.join(self.out, *parts)

    def command(self, args: list[str], timeout: float) -> subprocess.CompletedProcess:
        """Run ``args`` in the repository root (at most ``timeout`` s and what is left of the budget),
        logged; a time-out is an exit status of 124, as with ``timeout``."""
        limit = max(1.0, min(timeout, self.deadline - time.monotonic()))
        self.log(f"$ {' '.join(args)}   (limit {limit:.0f} s)")
        env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
        env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH", "")) if p)
        try:
            done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=limit)
        except subprocess.TimeoutExpired as err:
            done = subprocess.CompletedProcess(args, 124, _text(err.stdout), _text(err.stderr) + "\n[timed out]")
        self.log(done.stdout + done.stderr + f"[exit {done.returncode}]\n")
        return done

    def run_evolution(self, run_dir: str, timeout: float, launcher=(), **extra) -> subprocess.CompletedProcess:
        args = [sys.executable, *launcher, "-m", "learngene_ea.run", "--config", RECIPE, "--run-dir", run_dir,
                "--quiet", *sets(TINY, **{"runtime.device": self.device, **extra})]
        return self.command(args, timeout)

    def save(self) -> None:
        from learngene_ea.reports.files import write_json

        write_json(self.results, self.path("gpu-check.json"))

    def step(self, name: str) -> None:
        """Run step ``name``: ``ok`` (its own verdict, or False when it raised), seconds, its numbers."""
        start = time.perf_counter()
        try:
            numbers = getattr(self, name)()
        except Exception as err:  # recorded; the next step runs
            numbers = {"ok": False, "error": f"{type(err).__name__}: {err}"}
            self.log(f"[{name}] {numbers['error']}")
        numbers["seconds"] = round(time.perf_counter() - start, 2)
        self.results["steps"][name] = numbers
        self.log(f"[{name}] {'PASS' if numbers.get('ok') else 'FAIL'} in {numbers['seconds']} s")
        self.save()

    # ------------------------------------------------------------------------------ steps

    def environment(self) -> dict:
        smi = shutil.which("nvidia-smi")
        smi_out = self.command([smi], 20).stdout if smi else "nvidia-smi not found"
        probe = ("import json, torch; c = torch.cuda.is_available(); print(json.dumps({'torch': torch.__version__, "
                 "'cuda': torch.version.cuda, 'cudnn': torch.backends.cudnn.version(), 'cuda_available': c, "
                 "'devices': [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())], "
                 "'capability': list(torch.cuda.get_device_capability(0)) if c else None}))")
        done = self.command([sys.executable, "-c", probe], 60)
        facts = json.loads(done.stdout.strip().splitlines()[-1])
        versions = {}
        for package in ("deap", "scoop", "numpy", "yaml", "torchvision"):
            found = self.command([sys.executable, "-c", f"import {package}; print({package}.__version__)"], 30)
            versions[package] = found.stdout.strip() if found.returncode == 0 else None
        first = smi_out.strip().splitlines()[:12]
        return {"ok": done.returncode == 0 and (facts["cuda_available"] or self.device == "cpu")
                and None not in versions.values(), **facts, "packages": versions, "nvidia_smi": first}

    def cuda_tests(self) -> dict:
        files, ok = {}, True
        for test_file in CUDA_TEST_FILES:
            done = self.command([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", test_file], 150)
            tail = (done.stdout.strip().splitlines() or [""])[-1]
            counts = {word: int(n) for n, word in re.findall(r"(\d+) (passed|failed|skipped|error|errors)", tail)}
            files[test_file] = {"exit": done.returncode, "summary": tail, **counts}
            ok = ok and done.returncode == 0
        return {"ok": ok, "files": files}

    def tiny_run(self) -> dict:
        done = self.run_evolution(self.path("runs", "tiny"), 120, **{"ea.generations": 2})
        result = {"ok": done.returncode == 0, "exit": done.returncode}
        if done.returncode == 0:
            summary = _json(self.path("runs", "tiny", "summary.json"))
            result.update(best_accuracy=summary["best"]["accuracy"], numerics=summary.get("numerics"),
                          seconds_per_generation=summary["seconds_per_generation"],
                          devices=sorted(_evaluation_values(self.path("runs", "tiny"), "device")))
        return result

    def resume(self) -> dict:
        # resumed from generation 1's checkpoint of the same recipe (extending ea.generations would
        # change the run's budget, hence the gene pool's warm start): its logbook must be the tiny run's
        shutil.copytree(self.path("runs", "tiny"), self.path("runs", "resumed"))
        for name in ("latest.pkl", "gen_0002.pkl"):
            os.remove(self.path("runs", "resumed", "checkpoints", name))
        resumed = self.command([sys.executable, "-m", "learngene_ea.run", "--resume",
                                self.path("runs", "resumed", "checkpoints", "gen_0001.pkl"), "--quiet"], 120)
        identical = None
        if resumed.returncode == 0:
            identical = _logbook(self.path("runs", "resumed")) == _logbook(self.path("runs", "tiny"))
        return {"ok": bool(identical), "resumed_exit": resumed.returncode, "logbooks_identical": identical}

    def batched(self) -> dict:
        result = {"ok": False}
        for precision in ("fp32", "bf16"):
            name = "batched" if precision == "fp32" else "batched-bf16"
            settings = {"ea.generations": 2, "fitness.population_batch": 4, "runtime.precision": precision}
            done = self.run_evolution(self.path("runs", name), 120, **settings)
            result[f"{precision}_exit"] = done.returncode
            if done.returncode != 0:
                return result
            result[f"{precision}_stacked"] = sorted(_evaluation_values(self.path("runs", name), "stacked"), key=str)
            result[f"{precision}_numerics"] = _json(self.path("runs", name, "summary.json")).get("numerics")
        first, bf16 = (_logbook(self.path("runs", name))[0] for name in ("batched", "batched-bf16"))
        alone = _logbook(self.path("runs", "tiny"))[0]  # generation 0: the same individuals
        gap = max(abs(first[k] - alone[k]) for k in ("acc_min", "acc_avg", "acc_max"))
        bf16_gap = max(abs(first[k] - bf16[k]) for k in ("acc_min", "acc_avg", "acc_max"))
        stacked = result["fp32_stacked"] + result["bf16_stacked"]
        result.update(generation0_accuracy_gap=gap, bf16_generation0_accuracy_gap_vs_fp32=bf16_gap,
                      ok=None not in stacked and min(stacked) > 1 and gap <= BATCHED_TOLERANCE
                      and bf16_gap <= BF16_TOLERANCE and result["bf16_numerics"]["precision"] == "bf16")
        return result

    def scoop(self) -> dict:
        done = self.run_evolution(self.path("runs", "scoop"), 180, launcher=("-m", "scoop", "-n", str(self.workers)),
                                  **{"ea.generations": 2})
        result = {"ok": False, "exit": done.returncode, "workers": self.workers}
        if done.returncode == 0:
            same = _logbook(self.path("runs", "scoop")) == _logbook(self.path("runs", "tiny"))
            devices = _evaluation_values(self.path("runs", "scoop"), "device")
            result.update(logbook_equals_one_process=same, devices=sorted(devices), ok=same)
        return result

    def transfer(self) -> dict:
        learngene = self.path("runs", "tiny", "learngene.pt")
        means, exits = {}, {}
        for device in dict.fromkeys((self.device, "cpu")):
            out = self.path("transfer", device)
            done = self.command([sys.executable, "-m", "learngene_ea.transfer", "--learngene", learngene, "--out", out,
                                 "--quiet", *sets(TINY_TRANSFER, **{"runtime.device": device})], 180)
            exits[device] = done.returncode
            if done.returncode == 0:
                means[device] = _row_means(_json(os.path.join(out, "transfer.json")))
        result = {"ok": all(code == 0 for code in exits.values()), "exits": exits,
                  "means": {d: {" / ".join(k): v for k, v in m.items()} for d, m in means.items()}}
        if len(means) == 2:
            a, b = means[self.device], means["cpu"]
            result["largest_mean_difference_vs_cpu"] = max(abs(a[k] - b[k]) for k in a)
        return result

    def traced(self) -> dict:
        run = self.path("runs", "traced")
        done = self.run_evolution(run, 150, **TRACED)
        result = {"ok": False, "exit": done.returncode}
        if done.returncode != 0:
            return result
        result["devices"] = sorted(_evaluation_values(run, "device"))
        out = self.path("transfer", "traced")
        moved = self.command([sys.executable, "-m", "learngene_ea.transfer", "--learngene", os.path.join(run, "learngene.pt"),
                              "--out", out, "--quiet", "--descendants", "torchvision:resnet34",
                              *sets(TINY_TRANSFER, **{"runtime.device": self.device})], 150)
        result["transfer_exit"] = moved.returncode
        if moved.returncode == 0:
            result["means"] = {" / ".join(k): v for k, v in _row_means(_json(os.path.join(out, "transfer.json"))).items()}
        result["ok"] = moved.returncode == 0
        return result

    def bench(self) -> dict:
        name = f"gpu-check-{time.strftime('%Y%m%d-%H%M%S')}"
        done = self.command([sys.executable, "-m", "bench", "--only", "gpu", "--name", name], 200)
        path = os.path.join(ROOT, "bench", "results", f"{name}.json")
        result = {"ok": done.returncode == 0 and os.path.exists(path), "exit": done.returncode}
        if os.path.exists(path):
            shutil.copy(path, self.path("bench-gpu.json"))
            gpu = _json(path).get("gpu", {})
            result["skipped"] = gpu.get("skipped")
            result["rows"] = {label: {k: row.get(k) for k in ("images_per_second", "tflops", "fraction_of_peak")}
                              for part in ("training", "stacked_training") for label, row in gpu.get(part, {}).items()}
            result["population_batching"] = gpu.get("population_batching")
        return result


def _text(value) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else (value or "")


def _json(path: str):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _logbook(run_dir: str) -> list[dict]:
    """The run's logbook without wall-clock seconds (the rest repeats exactly)."""
    with open(os.path.join(run_dir, "logbook.jsonl"), encoding="utf-8") as f:
        return [{k: v for k, v in json.loads(line).items() if k != "seconds"} for line in f if line.strip()]


def _evaluation_values(run_dir: str, key: str) -> set:
    """``evaluation[key]`` of every individual in the run's latest checkpoint."""
    from learngene_ea.io.checkpoint import load_checkpoint

    payload = load_checkpoint(os.path.join(run_dir, "checkpoints", "latest.pkl"))
    return {getattr(ind, "evaluation", {}).get(key) for ind in payload["population"]}


def _row_means(results: dict) -> dict:
    """(method, arch, setting) -> mean accuracy of every row of a transfer.json."""
    means = {}
    for row in results["rows"]:
        for setting, numbers in row["results"].items():
            values = numbers["accuracies"]
            means[(row["method"], str(row["arch"]), setting)] = sum(values) / len(values)
    return means


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu_check", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "gpu-check"))
    parser.add_argument("--device", default="cuda", help="cuda (the check), or cpu (the suite's dry run)")
    parser.add_argument("--steps", default=",".join(STEPS), help=f"comma-separated subset of {','.join(STEPS)}")
    parser.add_argument("--workers", type=int, default=4, help="SCOOP processes of the scoop step")
    parser.add_argument("--budget", type=float, default=450.0, help="seconds for all steps together")
    args = parser.parse_args(argv)
    steps = [s for s in args.steps.split(",") if s]
    unknown = sorted(set(steps) - set(STEPS))
    if unknown:
        parser.error(f"unknown steps {unknown}; choose from {', '.join(STEPS)}")
    for stale in glob.glob(os.path.join(args.out, "runs", "*")) + glob.glob(os.path.join(args.out, "transfer")):
        shutil.rmtree(stale, ignore_errors=True)
    check = Check(args.out, args.device, args.workers, args.budget)
    for name in steps:
        check.step(name)
    check.results["passed"] = all(s.get("ok") for s in check.results["steps"].values())
    check.save()
    print(json.dumps({name: ("PASS" if s.get("ok") else "FAIL") for name, s in check.results["steps"].items()}))
    return 0 if check.results["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
