"""The GPU rows of ``python -m bench``, run on the CPU with tiny sizes: the code a GPU machine runs
is the code CI runs, the FLOP count is checked by hand, and the peak table picks the right row."""
import pytest
import torch

from bench.gpu import (bench_gpu, bench_population_batching, bench_stacked_training, bench_training_throughput,
                       forward_flops_by_hand, peak_tflops, step_precision)
from conftest import tiny_overrides
from learngene_ea.core.models import build_model

CPU = torch.device("cpu")


@pytest.mark.parametrize("family,size", [("conv4", 32), ("vgg11", 32), ("resnet12", 84)])
def test_the_flop_counter_counts_the_model_as_a_hand_count_does(family, size):
    from torch.utils.flop_counter import FlopCounterMode

    model = build_model(family, 0.25, num_classes=5, seed=0).eval()
    x = torch.randn(2, 3, size, size)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x)
    assert counter.get_total_flops() == forward_flops_by_hand(model, x) > 0


def test_training_rows_report_throughput_flops_and_no_fraction_without_a_peak():
    rows = bench_training_throughput(CPU, None, families=(("conv4", 32),), batch=4, steps=1)
    assert set(rows) == {f"conv4 bf16={b} channels_last={c}" for b in (False, True) for c in (False, True)}
    forward = forward_flops_by_hand(build_model("conv4", 1.0, num_classes=64).eval(), torch.randn(1, 3, 32, 32))
    for row in rows.values():
        assert row["images_per_second"] > 0 and row["fraction_of_peak"] is None
        # A training step is the forward pass plus a backward pass of up to twice its cost.
        assert 2 * forward < row["flops_per_image"] <= 3 * forward


def test_stacked_rows_cover_each_stack_size_with_and_without_bf16_and_channels_last():
    """A stack of P descendants does P descendants' work: the FLOPs per image are one descendant's."""
    peaks = {"fp32": 1e-6, "tf32": 2e-6, "bf16": 4e-6}
    rows = bench_stacked_training(CPU, peaks, sizes=(1, 3), batch=2, steps=1)
    assert set(rows) == {f"P={p} bf16={b} channels_last={c}" for p in (1, 3) for b in (False, True)
                         for c in (False, True)}
    for label, row in rows.items():
        assert row["images_per_second"] > 0 and row["descendants"] == int(label.split()[0][2:])
        assert row["fraction_of_peak"] == pytest.approx(row["tflops"] / peaks[row["precision"]])
    one, three = rows["P=1 bf16=False channels_last=False"], rows["P=3 bf16=False channels_last=False"]
    assert three["flops_per_image"] == pytest.approx(one["flops_per_image"], rel=0.01)


def test_fraction_of_peak_is_taken_against_the_precision_the_step_ran_in():
    peaks = {"fp32": 1e-6, "tf32": 2e-6, "bf16": 4e-6}
    rows = bench_training_throughput(CPU, peaks, families=(("conv4", 32),), batch=2, steps=1)
    for label, row in rows.items():
        assert row["precision"] == step_precision("bf16=True" in label)
        assert row["fraction_of_peak"] == pytest.approx(row["tflops"] / peaks[row["precision"]])


def test_the_peak_table_tells_gpu_variants_apart():
    assert peak_tflops("NVIDIA H100 80GB HBM3")["bf16"] == 989.4  # SXM
    assert peak_tflops("NVIDIA H100 PCIe")["bf16"] == 756.0
    assert peak_tflops("NVIDIA H100 NVL")["bf16"] == 835.5
    assert peak_tflops("NVIDIA H200")["tf32"] == 494.7
    assert peak_tflops("NVIDIA A100-SXM4-80GB")["fp32"] == 19.5
    assert peak_tflops("NVIDIA GeForce GTX 1080") is None
    assert peak_tflops("NVIDIA A10G") is None and peak_tflops("NVIDIA L40") is None  # not the A10's, the L4's
    assert peak_tflops("NVIDIA A10")["bf16"] == 125.0 and peak_tflops("NVIDIA L4")["bf16"] == 121.0


def test_population_batching_row_times_both_paths_and_compares_their_accuracies():
    overrides = tiny_overrides() + ["task.steps=3", "fitness.episodes=2", "transfer.after_run=false"]
    row = bench_population_batching(CPU, overrides, descendants=3, repeats=1)
    assert row["descendants"] == 3 and row["model"] == "conv4x0.25" and row["batched_ran_stacked"]
    assert row["one_by_one_seconds"] > 0 and row["batched_seconds"] > 0
    assert row["speedup"] == pytest.approx(row["one_by_one_seconds"] / row["batched_seconds"])
    assert row["largest_accuracy_difference"] <= 0.02  # test_batched.py's tolerance
    # runtime.precision bf16: the same evaluations within bf16's tolerance (the GPU check's)
    assert row["batched_bf16_seconds"] > 0 and row["largest_bf16_accuracy_difference"] <= 0.1


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_without_a_gpu_the_gpu_rows_say_why_they_were_skipped():
    assert "no CUDA GPU" in bench_gpu([], 1)["skipped"]


def test_the_printed_table_shows_each_gpu_row_with_its_fraction_of_peak(capsys):
    from bench.run import print_table

    peaks = {"fp32": 1e-3, "tf32": 2e-3, "bf16": 4e-3}
    batching = {"descendants": 16, "model": "conv4x0.5", "steps": 60, "one_by_one_seconds": 8.0,
                "batched_seconds": 2.0, "speedup": 4.0, "largest_accuracy_difference": 0.004,
                "batched_ran_stacked": False}
    print_table({"gpu": {"device": "NVIDIA H100 80GB HBM3", "peak_tflops": peaks, "population_batching": batching,
                         "training": bench_training_throughput(CPU, peaks, families=(("conv4", 32),), batch=2,
                                                               steps=1),
                         "stacked_training": bench_stacked_training(CPU, peaks, sizes=(2,), batch=2, steps=1)}})
    lines = capsys.readouterr().out.splitlines()
    assert len([line for line in lines if "% of bf16 peak" in line]) == 2 + 2
    assert len([line for line in lines if "% of tf32 peak" in line or "% of fp32 peak" in line]) == 2 + 2
    assert len([line for line in lines if "stacked conv4x0.5 P=2" in line]) == 4
    assert "batching 16 conv4x0.5 descendants" in lines[-1] and "4.00x" in lines[-1] and "FELL BACK" in lines[-1]
