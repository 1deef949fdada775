"""The command line every generated image folder shares: arguments, checks, and never writing into a
folder that already holds files."""
from __future__ import annotations

import argparse
import os
import sys

from PIL import Image


def write_class_folders(out: str, names: list[str], invent, draw, per_class: int) -> list[str]:
    """Write ``out/<name>/<i>.png`` for every class name: ``invent()`` makes the class, ``draw(it)`` one
    uint8 image of it (both drawing from the caller's one seeded generator, in this order); return ``names``."""
    for name in names:
        made = invent()
        os.makedirs(os.path.join(out, name), exist_ok=True)
        for i in range(per_class):
            Image.fromarray(draw(made)).save(os.path.join(out, name, f"{i:03d}.png"))
    return names


def folder_writer_main(argv, prog: str, doc: str, write, pixels: str) -> int:
    """Parse ``--out --classes --per-class --size --seed``, refuse bad values or a non-empty ``--out``
    (exit 2), then ``write(out, classes, per_class, size, seed)``; ``pixels`` names them in the summary."""
    parser = argparse.ArgumentParser(prog=prog, description=doc.split("\n")[0])
    parser.add_argument("--out", required=True, help="folder to write (made if missing)")
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--per-class", type=int, default=60, help="images per class")
    parser.add_argument("--size", type=int, default=32, help="side of the square images")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.classes < 2 or args.per_class < 1 or args.size < 8:
        print("error: --classes must be at least 2, --per-class at least 1 and --size at least 8.", file=sys.stderr)
        return 2
    if os.path.isdir(args.out) and os.listdir(args.out):
        print(f"error: {args.out!r} exists and is not empty; pass a new --out folder.", file=sys.stderr)
        return 2
    names = write(args.out, args.classes, args.per_class, args.size, args.seed)
    print(f"{args.out}: {len(names)} classes x {args.per_class} images of {args.size}x{args.size} {pixels}")
    return 0
