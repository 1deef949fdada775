"""Ray as the second engine (``runtime.backend: ray``): the logbook of one process, lost workers rerun,
bad settings refused before any compute. The tests start one local Ray of 2 CPUs and share it."""
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed (the [ray] extra: pip install -e \".[ray]\")")

from conftest import RECIPE, ROOT, read_logbook, tiny_overrides, without_timings  # noqa: E402
from learngene_ea.cli import run as run_module  # noqa: E402
from learngene_ea.config.loading import load_config  # noqa: E402
from learngene_ea.ea.evolve import evolve, new_state  # noqa: E402
from learngene_ea.parallel.workers import run_toolbox  # noqa: E402


def tiny_logbook(**extra):
    cfg = load_config(RECIPE, tiny_overrides(**extra))
    state = evolve(cfg, run_toolbox(cfg), new_state(cfg), log=lambda *_: None)
    return without_timings(state.logbook)


@pytest.fixture(scope="module")
def cluster():
    """A local Ray of 2 CPUs and no GPU (even on a GPU host) in this process; its address lets a run in
    another process join it."""
    if ray.is_initialized():
        ray.shutdown()
    context = ray.init(num_cpus=2, num_gpus=0, include_dashboard=False, log_to_driver=False,
                       runtime_env={"env_vars": {"PYTHONPATH": ROOT, "OMP_NUM_THREADS": "1"}})
    yield context.address_info["gcs_address"]
    ray.shutdown()


@pytest.mark.slow
def test_ray_gives_the_logbook_of_one_process_and_puts_each_object_once(cluster, serial_logbook, monkeypatch):
    """Every evaluation is seeded by (run seed, generation, id): which Ray worker ran it changes nothing.
    Per generation, the function (recipe, dataset reference) goes to the object store once and each
    individual (its learngene) once, not once per task."""
    puts = []
    real_put = ray.put
    monkeypatch.setattr(ray, "put", lambda value, **kw: puts.append(type(value).__name__) or real_put(value, **kw))
    logbook = tiny_logbook(**{"runtime.backend": "ray"})
    assert logbook == serial_logbook
    assert puts.count("partial") == len(logbook)  # one toolbox.evaluate per generation
    assert puts.count("LearngeneIndividual") == sum(record["evals"] for record in logbook)


def ray_task_processes():
    """PIDs of Ray workers running one of our evaluations now (Ray titles them by the task)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    if f.read().startswith(b"ray::_run_task"):
                        found.append(int(entry))
            except OSError:
                continue
    return found


@pytest.mark.slow
def test_a_killed_ray_worker_is_rerun_and_the_run_finishes_with_the_same_logbook(cluster, serial_logbook, tmp_path):
    """``python -m learngene_ea.run --set runtime.backend=ray --set runtime.ray_address=HOST:PORT`` joins the
    cluster; a worker killed in the middle of an evaluation is replaced and its task rerun by Ray."""
    args = [sys.executable, "-m", "learngene_ea.run", "--config", RECIPE, "--run-dir", str(tmp_path / "run"), "--quiet"]
    for item in tiny_overrides(**{"runtime.backend": "ray", "runtime.ray_address": cluster,
                                  "fitness.rescore_episodes": 0}):
        args += ["--set", item]
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS="1")
    proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    killed = []

    def kill_one_evaluation():
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline and not killed:
            running = ray_task_processes()
            if running:
                os.kill(running[0], signal.SIGKILL)
                killed.append(running[0])
            time.sleep(0.02)

    killer = threading.Thread(target=kill_one_evaluation)
    killer.start()
    try:
        out, err = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
        killer.join()
    assert killed, "no evaluation was seen running on a Ray worker"
    assert proc.returncode == 0, err[-3000:]
    assert read_logbook(tmp_path / "run") == serial_logbook


@pytest.mark.parametrize("setting, message", [
    ("runtime.ray_address=127.0.0.1:9", "error: runtime.ray_address '127.0.0.1:9' cannot be reached"),
    ("runtime.ray_address=nowhere", "error: runtime.ray_address is 'nowhere'; it must be null"),
])
def test_unusable_ray_addresses_stop_the_run_before_any_compute(setting, message, tmp_path, capsys):
    args = ["--run-dir", str(tmp_path / "run"), "--set", "runtime.backend=ray", "--set", setting] + \
        [a for item in tiny_overrides() for a in ("--set", item)]
    assert run_module.main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1, err
    assert not (tmp_path / "run").exists()


def test_gpus_the_cluster_does_not_have_are_refused(cluster, tmp_path, capsys):
    args = ["--run-dir", str(tmp_path / "run"), "--set", "runtime.backend=ray",
            "--set", "runtime.gpus_per_evaluation=0.25"] + [a for item in tiny_overrides() for a in ("--set", item)]
    assert run_module.main(args) == 2
    assert capsys.readouterr().err == ("error: runtime.gpus_per_evaluation is 0.25 but the Ray cluster has 0 GPUs; "
                                       "set it to 0 for CPU evaluations or join a cluster with GPUs.\n")
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_transfer_episodes_on_ray_give_the_numbers_of_one_process(cluster, serial_run_dir, tmp_path):
    """The transfer's context goes to the object store once; every (method, setting, episode) is a task."""
    from learngene_ea.transfer import TransferOptions, run_transfer
    from test_scoop_launch import _episode_numbers

    def table(backend):
        overrides = tiny_overrides(**{"runtime.backend": backend}) + [
            "transfer.episodes=3", "transfer.steps=3", "transfer.shots=[1]", "transfer.limited_data=0",
            "transfer.n_query=5", "transfer.pretrain_epochs=1", "task.batch_size=64"]
        lines = []
        results = run_transfer(load_config(RECIPE, overrides), str(serial_run_dir / "learngene.pt"),
                               tmp_path / backend, TransferOptions(write=False), log=lines.append)
        return results, lines

    alone, _ = table("serial")
    spread, lines = table("ray")
    assert any("spread over 2 Ray processes" in line for line in lines), lines
    assert _episode_numbers(spread) == _episode_numbers(alone)


def test_each_evaluation_reserves_its_share_of_a_gpu_and_is_rerun_when_its_worker_dies():
    """runtime.gpus_per_evaluation is Ray's num_gpus (0.25: four descendants per GPU); threads are its CPUs."""
    from learngene_ea.parallel.ray_engine import _remote

    runtime = load_config(None, ["runtime.backend=ray", "runtime.gpus_per_evaluation=0.25", "runtime.threads=2",
                                 "runtime.ray_max_retries=5"]).runtime
    options = _remote(runtime)._default_options
    assert (options["num_gpus"], options["num_cpus"], options["max_retries"]) == (0.25, 2, 5)
    assert not options.get("retry_exceptions")  # an evaluation reports its own failures; only lost workers rerun


def test_a_gpu_evaluation_keeps_its_worker_process():
    """Ray's default for GPU tasks is one task per worker process (torch, CUDA and the dataset anew
    for every evaluation); max_calls=0 keeps the worker."""
    from learngene_ea.parallel.ray_engine import _remote

    runtime = load_config(None, ["runtime.backend=ray", "runtime.gpus_per_evaluation=0.5"]).runtime
    assert _remote(runtime)._default_options["max_calls"] == 0


def test_an_evaluation_that_reserved_no_gpu_runs_on_the_cpu_even_where_torch_sees_one(monkeypatch):
    from learngene_ea.parallel.ray_engine import _run_task
    from learngene_ea.parallel.scoop_engine import worker_device

    monkeypatch.setattr("torch.cuda.is_available", lambda: True)
    monkeypatch.setattr("torch.cuda.device_count", lambda: 1)
    assert str(worker_device("auto")) == "cuda:0"  # outside a task: auto takes the GPU
    for setting in ("auto", "cuda", "cpu"):
        assert str(_run_task(lambda item: worker_device(item), setting, {}, 1, 0.0)) == "cpu"


def test_a_gpu_evaluation_uses_the_gpu_ray_reserved_as_its_process_numbers_it():
    """Ray's CUDA_VISIBLE_DEVICES makes the reserved GPU cuda:0; with every GPU visible (how a local Ray
    with GPU evaluations starts) it is the GPU's own index; a GPU the process cannot see is refused."""
    from learngene_ea.parallel.ray_engine import gpu_index

    assert gpu_index([3], ["3"]) == 0
    assert gpu_index(["2"], ["0", "1", "2", "3"]) == 2
    assert gpu_index([1], [0, 1]) == 1
    with pytest.raises(RuntimeError, match="RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES=1"):
        gpu_index([1], ["0"])
