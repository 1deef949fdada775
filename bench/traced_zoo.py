"""What the tracing analysis makes of torchvision's classifiers, and what one training step of each costs.

``python -m bench.traced_zoo [--out bench/results/traced-zoo-DATE] [--networks NAME ...]``

Per network: seconds to trace and analyse it (on the ``meta`` device, as every process does once),
its convolutions, gene layers, mask groups and the convolutions left out of the genome (with the
first note), its gene-layer parameters, and the seconds of one SGD step on a batch of 32 images of
32x32 (the built-in dataset's size) with this machine's threads, as a ratio to Conv4 x0.5 (the
default recipe's network) measured side by side in the same run (medians of 5 steps after 2).
Writes ``OUT.json`` and ``OUT.md``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import torch
from torch import nn

from learngene_ea.core import traced
from learngene_ea.core.models import arch_spec, build_model

NETWORKS = ["resnet18", "resnet34", "resnet50", "mobilenet_v2", "mobilenet_v3_small", "efficientnet_b0",
            "densenet121", "resnext50_32x4d", "regnet_y_400mf", "shufflenet_v2_x1_0", "convnext_tiny"]


def step_seconds(family: str, width: float = 1.0, batch: int = 32, repeats: int = 5) -> float:
    """Median seconds of one SGD step (forward, loss, backward, update) of ``family`` on 32x32 images."""
    model = build_model(family, width, 3, 16, seed=0).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    images, labels = torch.randn(batch, 3, 32, 32), torch.randint(0, 16, (batch,))
    times = []
    for k in range(repeats + 2):
        start = time.perf_counter()
        loss = nn.functional.cross_entropy(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if k >= 2:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def analyse(name: str) -> dict:
    family = f"torchvision:{name}"
    traced._TRACES.clear()
    start = time.perf_counter()
    try:
        spec = arch_spec(family)
    except Exception as err:  # a network nothing of which can be placed is a row too
        return {"network": family, "error": str(err)}
    seconds = time.perf_counter() - start
    result = traced.traced(family, 3)
    convs = sum(isinstance(m, nn.Conv2d) for m in build_model(family, num_classes=2).modules())
    return {"network": family, "trace_seconds": seconds, "convs": convs, "gene_layers": len(spec.layers),
            "groups": len(spec.groups), "left_out": len(result.notes), "first_note": (result.notes or [""])[0],
            "gene_params": spec.num_gene_params()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.traced_zoo", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=f"bench/results/traced-zoo-{time.strftime('%Y%m%d')}")
    parser.add_argument("--networks", nargs="*", default=NETWORKS)
    args = parser.parse_args(argv)
    torch.set_num_threads(os.cpu_count() or 1)
    conv4 = step_seconds("conv4", 0.5)
    rows = []
    for name in args.networks:
        row = analyse(name)
        if "error" not in row and row["left_out"] < row["convs"]:
            row["step_seconds"] = step_seconds(row["network"])
            row["step_vs_conv4"] = row["step_seconds"] / conv4
        rows.append(row)
        print(json.dumps(row))
    info = {"machine": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
            "torch": torch.__version__, "conv4_x0.5_step_seconds": conv4, "rows": rows}
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out + ".json", "w", encoding="utf-8") as f:
        json.dump(info, f, indent=1)
    with open(args.out + ".md", "w", encoding="utf-8") as f:
        f.write(markdown(info))
    return 0


def markdown(info: dict) -> str:
    lines = [f"### torchvision classifiers traced ({info['threads']} threads, torch {info['torch']})", "",
             f"Step: one SGD step on 32 images of 32x32; Conv4 x0.5 (the default recipe) takes "
             f"{1000 * info['conv4_x0.5_step_seconds']:.1f} ms here.", "",
             "| network | trace s | convs | gene layers | mask groups | left out | gene params | step ms (x Conv4 x0.5) | first note |",
             "|:--|--:|--:|--:|--:|--:|--:|--:|:--|"]
    for row in info["rows"]:
        if "error" in row:
            lines.append(f"| {row['network']} | | | | | | | | {row['error']} |")
            continue
        step = (f"{1000 * row['step_seconds']:.0f} ({row['step_vs_conv4']:.0f}x)" if "step_seconds" in row else "")
        lines.append(f"| {row['network']} | {row['trace_seconds']:.2f} | {row['convs']} | {row['gene_layers']} | "
                     f"{row['groups']} | {row['left_out']} | {row['gene_params']:,} | {step} | {row['first_note']} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
