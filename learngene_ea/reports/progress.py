"""Progress bars where a person waits: the one tqdm bar factory of the command lines and the API."""
from __future__ import annotations

import sys


def tqdm_bars(unit: str):
    """A bar factory ``progress(iterable, total, desc, unit=unit)``: a tqdm bar on stderr that leaves no line
    behind (a generation's descendants, a transfer's episodes, a training's steps with ``unit="step"``)."""
    def progress(iterable, total, desc, unit=unit):
        from tqdm import tqdm

        return tqdm(iterable, total=total, desc=desc, unit=unit, leave=False, file=sys.stderr)

    return progress
