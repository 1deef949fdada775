"""The GPU rows of ``python -m bench``: training throughput, fraction of peak FLOP/s, the library's training
step of P = 1, 16, 64 stacked Conv4 descendants (each with and without bf16 and channels-last), and
population batching of 16 Conv4 descendants' whole evaluations (fp32 and ``runtime.precision: bf16``).

Every function takes the device, so the test suite runs the same code on a CPU with tiny sizes;
:func:`bench_gpu` is what the suite runs on a CUDA device, and says why it skipped otherwise.
"""
from __future__ import annotations

import re
import time

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from bench.common import fresh_population, medians_in_turns
from learngene_ea.core.batched import StackedDescendants
from learngene_ea.config.loading import load_config
from learngene_ea.data import load_dataset
from learngene_ea.ea.fitness import evaluate, evaluate_chunk
from learngene_ea.core.models import build_model

# Dense peak TFLOP/s (no structured sparsity) from NVIDIA's product datasheets: FP32 on CUDA cores,
# TF32 and BF16 on tensor cores. Matched against torch.cuda.get_device_name() (peak_tflops).
# Anything else: pass --peak-tflops FP32 TF32 BF16.
GPU_PEAK_TFLOPS = {
    "H200 NVL": {"fp32": 60.0, "tf32": 417.5, "bf16": 835.5},
    "H200": {"fp32": 67.0, "tf32": 494.7, "bf16": 989.4},
    "H100 NVL": {"fp32": 60.0, "tf32": 417.5, "bf16": 835.5},
    "H100 PCIe": {"fp32": 51.0, "tf32": 378.0, "bf16": 756.0},
    "H100": {"fp32": 67.0, "tf32": 494.7, "bf16": 989.4},
    "A100": {"fp32": 19.5, "tf32": 156.0, "bf16": 312.0},
    "L40S": {"fp32": 91.6, "tf32": 183.0, "bf16": 362.1},
    "A10": {"fp32": 31.2, "tf32": 62.5, "bf16": 125.0},
    "L4": {"fp32": 30.3, "tf32": 60.0, "bf16": 121.0},
}

# (family, image size): the paper's architectures at the sizes their datasets use.
GPU_FAMILIES = (("conv4", 32), ("vgg11", 32), ("resnet12", 84))
# Stacked descendants per training step (fitness.population_batch): one, a generation, a GPU's worth.
STACK_SIZES = (1, 16, 64)


def peak_tflops(device_name: str) -> dict[str, float] | None:
    """The datasheet peaks of the GPU called ``device_name``, or None when it is not in the table.

    Whole words only, the most specific entry first: "NVIDIA H100 PCIe" is the PCIe card, an
    "A10G" or an "L40" is none of the table's (their peaks differ from the A10's and the L4's).
    """
    words = set(re.split(r"[\s_-]+", device_name.upper()))
    for name in sorted(GPU_PEAK_TFLOPS, key=len, reverse=True):
        if set(name.upper().split()) <= words:
            return GPU_PEAK_TFLOPS[name]
    return None


def step_precision(bf16: bool) -> str:
    """Which peak a training step is measured against: convolutions run in BF16 under autocast, else
    in TF32 when cuDNN may use it (PyTorch's default), else in FP32."""
    if bf16:
        return "bf16"
    return "tf32" if torch.backends.cudnn.allow_tf32 else "fp32"


def forward_flops_by_hand(model: nn.Module, x: torch.Tensor) -> int:
    """Forward FLOPs of ``model`` on ``x`` counted layer by layer (2 per multiply-add of every
    convolution and linear layer): the check on :class:`FlopCounterMode`'s count."""
    total = 0

    def count(module, inputs, output):
        nonlocal total
        if isinstance(module, nn.Conv2d):
            k_h, k_w = module.kernel_size
            total += 2 * output.numel() * (module.in_channels // module.groups) * k_h * k_w
        elif isinstance(module, nn.Linear):
            total += 2 * output.numel() * module.in_features

    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for hook in hooks:
            hook.remove()
    return total


def training_throughput(family: str, size: int, batch: int, bf16: bool, channels_last: bool,
                        device: torch.device, steps: int = 30, warmup: int = 5) -> dict:
    """Images/second and FLOP/s of SGD training steps of a width-1 ``family`` network on random
    ``size`` x ``size`` images (64 classes), FLOPs counted once per step (forward + backward)."""
    model = build_model(family, 1.0, num_classes=64, seed=0, device=device)
    x = torch.randn(batch, 3, size, size, device=device)
    y = torch.randint(0, 64, (batch,), device=device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    with FlopCounterMode(display=False) as counter:
        step()
    flops_per_step = counter.get_total_flops()
    for _ in range(warmup):
        step()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize(device)
    seconds = (time.perf_counter() - start) / steps
    return {"images_per_second": batch / seconds, "flops_per_image": flops_per_step / batch,
            "tflops": flops_per_step / seconds / 1e12, "precision": step_precision(bf16),
            "batch": batch, "image_size": size}


def stacked_throughput(descendants: int, batch: int, bf16: bool, channels_last: bool, device: torch.device,
                       width: float = 0.5, steps: int = 20, warmup: int = 3) -> dict:
    """Images/second and FLOP/s of the training step of ``descendants`` Conv4 x``width`` descendants
    stacked as one grouped network, as ``fitness.population_batch`` trains them: the library's own step
    (:class:`~learngene_ea.fewshot.training.PopulationTrainer`: one gather builds every descendant's augmented
    batch of ``batch`` images of its own 5-class task, then one forward, backward and SGD update),
    ``runtime.precision`` bf16 or fp32."""
    from learngene_ea.core.models import memory_format, use_channels_last
    from learngene_ea.fewshot.batches import TaskBatches
    from learngene_ea.fewshot.sampling import sample_task
    from learngene_ea.fewshot.training import PopulationTrainer, TrainSettings, use_precision

    dataset = _step_dataset()
    saved_layout = memory_format()
    use_channels_last(channels_last)  # the layout of a single descendant and of the stack
    use_precision("bf16" if bf16 else "fp32")
    try:
        models = [build_model("conv4", width, num_classes=5, seed=p, device=device) for p in range(descendants)]
        network = StackedDescendants(models, memory_format()) if descendants > 1 else models[0]
        streams = [TaskBatches(sample_task(dataset, p, 5, batch), batch, p) for p in range(descendants)]
        trainer = PopulationTrainer(network, dataset, device, TrainSettings(warmup + steps, batch, 0.01))
        block = trainer.plan(streams, warmup + steps)
        network.train()
        for t in range(warmup):
            trainer.step(block, t)
        synchronize(device)
        start = time.perf_counter()
        for t in range(warmup, warmup + steps):
            trainer.step(block, t)
        synchronize(device)
        seconds = (time.perf_counter() - start) / steps
    finally:
        use_precision("fp32")
        use_channels_last(saved_layout == torch.channels_last)
    flops_per_step = descendants * descendant_step_flops(width, batch, device)
    return {"descendants": descendants, "images_per_second": batch * descendants / seconds,
            "step_ms": 1e3 * seconds, "tflops": flops_per_step / seconds / 1e12,
            "flops_per_image": flops_per_step / (batch * descendants),
            "precision": step_precision(bf16), "batch_per_descendant": batch, "model": f"conv4x{width}"}


_STEP_DATASET = []


def _step_dataset():
    """A small built-in dataset (64 training classes of 64 images) the stacked steps draw from."""
    if not _STEP_DATASET:
        from learngene_ea.data.synthetic import make_synthetic

        _STEP_DATASET.append(make_synthetic(seed=0, images_per_class=64))
    return _STEP_DATASET[0]


def descendant_step_flops(width: float, batch: int, device: torch.device) -> int:
    """FLOPs of one Conv4 x``width`` descendant's training step (forward + backward) on ``batch``
    images: the work each descendant of a stack does. (Counted on the descendant alone because
    FlopCounterMode counts a grouped convolution's weight gradient as if it had one group, P times
    too many.)"""
    model = build_model("conv4", width, num_classes=5, seed=0, device=device)
    x = torch.randn(batch, 3, 32, 32, device=device)
    with FlopCounterMode(display=False) as counter:
        nn.functional.cross_entropy(model(x), torch.zeros(batch, dtype=torch.long, device=device)).backward()
    return counter.get_total_flops()


def bench_stacked_training(device: torch.device, peaks: dict[str, float] | None, sizes=STACK_SIZES,
                           batch: int = 64, steps: int = 20) -> dict:
    """:func:`stacked_throughput` for every stack size with and without bf16 and channels-last, each
    with its fraction of the peak of the precision it ran in (None without a peak)."""
    rows = {}
    for descendants in sizes:
        for bf16 in (False, True):
            for channels_last in (False, True):
                row = stacked_throughput(descendants, batch, bf16, channels_last, device, steps=steps)
                peak = peaks.get(row["precision"]) if peaks else None
                row["fraction_of_peak"] = None if peak is None else row["tflops"] / peak
                rows[f"P={descendants} bf16={bf16} channels_last={channels_last}"] = row
    return rows


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_training_throughput(device: torch.device, peaks: dict[str, float] | None, families=GPU_FAMILIES,
                              batch: int = 128, steps: int = 30) -> dict:
    """:func:`training_throughput` of every family with and without bf16 and channels-last, each
    with its fraction of the device's peak for the precision it ran in (None without a peak)."""
    rows = {}
    for family, size in families:
        for bf16 in (False, True):
            for channels_last in (False, True):
                row = training_throughput(family, size, batch, bf16, channels_last, device, steps)
                peak = peaks.get(row["precision"]) if peaks else None
                row["fraction_of_peak"] = None if peak is None else row["tflops"] / peak
                rows[f"{family} bf16={bf16} channels_last={channels_last}"] = row
    return rows


def bench_population_batching(device: torch.device, overrides: list[str], descendants: int = 16,
                              repeats: int = 3) -> dict:
    """``descendants`` Conv4 fitness evaluations on ``device``, one by one vs as one stacked chunk, and
    as one stacked chunk with ``runtime.precision: bf16`` (after one untimed round of each), medians of
    ``repeats`` rounds taken in turns."""
    settings = overrides + [f"ea.population_size={descendants}", "model.family=conv4", f"runtime.device={device}"]
    cfg = load_config("genomes/default.yaml", settings)
    bf16 = load_config("genomes/default.yaml", settings + ["runtime.precision=bf16"])
    load_dataset(cfg.data)
    population = fresh_population(cfg)

    def finished(evaluations):  # the GPU's queued work is part of the time
        synchronize(device)
        return evaluations

    median, last = medians_in_turns({"one_by_one": lambda: finished([evaluate(ind, cfg) for ind in population]),
                                     "batched": lambda: finished(evaluate_chunk(population, cfg)),
                                     "batched_bf16": lambda: finished(evaluate_chunk(population, bf16))}, repeats)
    largest_gap = max(abs(a.fitness[0] - b.fitness[0]) for a, b in zip(last["one_by_one"], last["batched"]))
    bf16_gap = max(abs(a.fitness[0] - b.fitness[0]) for a, b in zip(last["batched"], last["batched_bf16"]))
    # A failing stack falls back to one by one, and the row would then say nothing.
    stacked = all(e.info.get("stacked") == descendants for e in last["batched"] + last["batched_bf16"])
    return {"descendants": descendants, "model": f"conv4x{cfg.model.width}", "steps": cfg.task.steps,
            "one_by_one_seconds": median["one_by_one"], "batched_seconds": median["batched"],
            "speedup": median["one_by_one"] / median["batched"], "largest_accuracy_difference": largest_gap,
            "batched_bf16_seconds": median["batched_bf16"], "bf16_speedup": median["batched"] / median["batched_bf16"],
            "largest_bf16_accuracy_difference": bf16_gap, "batched_ran_stacked": stacked}


def bf16_note(row: dict) -> str:
    """The bf16 part of the printed population batching line (nothing for results without it)."""
    if "batched_bf16_seconds" not in row:
        return ""
    return (f"; bf16 {row['batched_bf16_seconds']:.2f}s ({row['bf16_speedup']:.2f}x over fp32, accuracies within "
            f"{row['largest_bf16_accuracy_difference']:.3f} of fp32's)")


def bench_gpu(overrides: list[str], repeats: int, peak_override: list[float] | None = None) -> dict:
    """The GPU rows on ``cuda:0``, or why they were not measured."""
    if not torch.cuda.is_available():
        return {"skipped": "no CUDA GPU on this machine: GPU rows (images/second, bf16, channels-last, "
                           "fraction of peak FLOP/s, P = 1, 16, 64 stacked descendants, batching of 16 "
                           "Conv4 descendants) not measured"}
    device = torch.device("cuda:0")
    name = torch.cuda.get_device_name(device)
    peaks = dict(zip(("fp32", "tf32", "bf16"), peak_override)) if peak_override else peak_tflops(name)
    return {"device": name, "peak_tflops": peaks,
            "training": bench_training_throughput(device, peaks),
            "stacked_training": bench_stacked_training(device, peaks),
            "population_batching": bench_population_batching(device, overrides, repeats=repeats)}
