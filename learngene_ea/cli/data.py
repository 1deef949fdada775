"""Show what the dataset loader sees for a recipe.

    python -m learngene_ea.data --config genomes/cifarfs.yaml [--set data.root=/data/cifar] [--json]

Prints the classes of every split with their names, images per class, image size, channels,
normalisation statistics, the cache file and the load time. A mistake in the recipe or the
dataset is one sentence on stderr and exit code 2 (``--debug`` shows the traceback instead).
"""
from __future__ import annotations

import argparse
import json
import time

from ..config.loading import load_config
from ..data import load_dataset
from .common import run_main


def summary(cfg) -> dict:
    """Load the dataset of ``cfg`` and describe it as plain data (what ``--json`` prints)."""
    start = time.perf_counter()
    dataset = load_dataset(cfg.data)
    seconds = time.perf_counter() - start
    info = dataset.describe()
    info.update(root=cfg.data.root, classes=len(dataset.class_names), load_seconds=round(seconds, 3),
                mean=[round(v, 4) for v in dataset.mean], std=[round(v, 4) for v in dataset.std])
    return info


def format_summary(info: dict) -> str:
    """The human-readable report of :func:`summary`."""
    unused = info["classes"] - sum(s["classes"] for s in info["splits"].values())
    lines = [
        f"{info['name']}: {info['classes']} classes{f' ({unused} in no split)' if unused else ''}, "
        f"{info['images']} images of "
        f"{info['channels']}x{info['image_size']}x{info['image_size']} (uint8), "
        f"loaded in {info['load_seconds']:.2f} s",
        f"root:  {info['root'] or '(none: generated)'}",
        f"cache: {info['cache_path'] or '(none)'}",
        f"mean:  {' '.join(f'{v:.4f}' for v in info['mean'])}   std: {' '.join(f'{v:.4f}' for v in info['std'])}",
    ]
    for split, s in info["splits"].items():
        counts = s["images_per_class"]
        per = (f"{counts[0]}" if len(counts) == 1 else f"{counts[0]}-{counts[-1]}") if counts else "0"
        lines.append(f"{split + ':':6} {s['classes']} classes, {per} images per class: {', '.join(s['names'])}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m learngene_ea.data", description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="recipe YAML file (default: the built-in defaults)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override one recipe key (repeatable)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of user errors")

    def body(argv):
        args = parser.parse_args(argv)
        info = summary(load_config(args.config, args.overrides))
        print(json.dumps(info, indent=2) if args.json else format_summary(info))
        return 0

    return run_main(body, argv, interrupted="nothing was written.")
