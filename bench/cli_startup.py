"""How long a command line takes to answer ``--help``: ``python -m bench.cli_startup [--repeats N] [--out FILE]``.

Each command runs in a fresh interpreter, ``--repeats`` times; the table gives the median wall-clock
seconds beside two floors measured in the same run: a bare interpreter (``python -c pass``) and one
that imports torch (``python -c "import torch"``), what ``--help`` cost when the command lines
imported the package's modules before reading their arguments. Writes JSON (``--out``) and prints a
Markdown table. A benchmark, not a test: timings on a shared machine are noisy.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

COMMANDS = {
    "python -c pass": ["-c", "pass"],
    "python -c 'import torch'": ["-c", "import torch"],
    "python -m learngene_ea.run --help": ["-m", "learngene_ea.run", "--help"],
    "python -m learngene_ea.study --help": ["-m", "learngene_ea.study", "--help"],
    "python -m learngene_ea.transfer --help": ["-m", "learngene_ea.transfer", "--help"],
    "python -m learngene_ea.data --help": ["-m", "learngene_ea.data", "--help"],
}


def seconds_of(args: list[str], repeats: int) -> tuple[float, bool]:
    """Median wall-clock seconds of ``python args`` in fresh processes, and whether it imported torch
    (read from one more run under ``-X importtime``)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, check=False)
        times.append(time.perf_counter() - start)
    traced = subprocess.run([sys.executable, "-X", "importtime", *args], cwd=ROOT, capture_output=True, text=True,
                            check=False)
    imported_torch = any(line.split("|")[-1].strip() == "torch" for line in traced.stderr.splitlines())
    return statistics.median(times), imported_torch


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cli_startup", description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)
    rows = []
    for label, command in COMMANDS.items():
        median, torch_imported = seconds_of(command, args.repeats)
        rows.append({"command": label, "median_seconds": round(median, 3), "imports_torch": torch_imported})
    print("| command | median s | imports torch |\n|:--|--:|:--|")
    for row in rows:
        print(f"| `{row['command']}` | {row['median_seconds']:.2f} | {'yes' if row['imports_torch'] else 'no'} |")
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump({"machine": platform.node(), "cores": os.cpu_count(), "repeats": args.repeats,
                       "python": platform.python_version(), "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
