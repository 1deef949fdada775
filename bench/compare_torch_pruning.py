"""Our traced mask groups against torch-pruning's ``DependencyGraph`` on the networks issue #26 names.

``python -m bench.compare_torch_pruning [--out bench/results/torch-pruning-groups-DATE]``

torch-pruning is not a dependency: install it beside the project first (``pip install
torch-pruning==1.6.1``; the committed result used 1.6.1 on a ``--target`` folder on ``PYTHONPATH``).
For every convolution, its pruning group of output channels (``prune_conv_out_channels``) is read
and reduced to the set of convolutions whose outputs it prunes; those sets are compared with our
groups' writers (:mod:`learngene_ea.core.tracing`). Writes ``OUT.json`` and ``OUT.md``.
"""
from __future__ import annotations

import argparse
import json
import os
import time

import torch
from torch import nn

from learngene_ea.core.models import arch_spec

NETWORKS = ["resnet18", "resnet50", "mobilenet_v2", "densenet121"]


def their_groups(name: str) -> tuple[set[frozenset], float]:
    """torch-pruning's groups of ``name``, each as the convs whose output channels it prunes."""
    import torch_pruning as tp
    import torchvision

    model = torchvision.models.get_model(name, weights=None, num_classes=10).eval()
    start = time.perf_counter()
    graph = tp.DependencyGraph().build_dependency(model, example_inputs=torch.randn(1, 3, 32, 32))
    names = {module: qualified for qualified, module in model.named_modules()}
    groups = set()
    for conv in (m for m in model.modules() if isinstance(m, nn.Conv2d)):
        group = graph.get_pruning_group(conv, tp.prune_conv_out_channels, list(range(conv.out_channels)))
        # a conv's out-channel pruner (plain or depthwise) is a method named prune_out_channels
        writers = frozenset(names[item.dep.target.module] for item in group
                            if isinstance(item.dep.target.module, nn.Conv2d)
                            and getattr(item.dep.handler, "__name__", "") == "prune_out_channels")
        groups.add(writers)
    return groups, time.perf_counter() - start


def our_groups(name: str) -> tuple[set[frozenset], float]:
    start = time.perf_counter()
    spec = arch_spec(f"torchvision:{name}")
    writers: dict[str, set] = {}
    for layer in spec.layers:
        writers.setdefault(layer.group, set()).add(layer.name)
    return {frozenset(w) for w in writers.values()}, time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.compare_torch_pruning", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=f"bench/results/torch-pruning-groups-{time.strftime('%Y%m%d')}")
    args = parser.parse_args(argv)
    rows = []
    for name in NETWORKS:
        ours, our_seconds = our_groups(name)
        theirs, their_seconds = their_groups(name)
        rows.append({"network": name, "our_groups": len(ours), "their_groups": len(theirs),
                     "identical": ours == theirs, "only_ours": sorted(map(sorted, ours - theirs))[:3],
                     "only_theirs": sorted(map(sorted, theirs - ours))[:3],
                     "our_seconds": our_seconds, "their_seconds": their_seconds})
        print(json.dumps(rows[-1]))
    import importlib.metadata

    info = {"torch_pruning": importlib.metadata.version("torch-pruning"), "torch": torch.__version__, "rows": rows}
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out + ".json", "w", encoding="utf-8") as f:
        json.dump(info, f, indent=1)
    lines = [f"### Mask groups: our torch.fx analysis vs torch-pruning {info['torch_pruning']} (torch {info['torch']})", "",
             "A group = the set of convolutions whose output channels it couples.", "",
             "| network | our groups | torch-pruning's | the same sets | our seconds (trace + analysis) | theirs (graph + groups) |",
             "|:--|--:|--:|:--|--:|--:|"]
    lines += [f"| {r['network']} | {r['our_groups']} | {r['their_groups']} | {'yes' if r['identical'] else 'NO'} | "
              f"{r['our_seconds']:.2f} | {r['their_seconds']:.2f} |" for r in rows]
    with open(args.out + ".md", "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
