"""A learngene's worth on test classes from Python: :func:`evaluate_learngene` -> :class:`TransferResult`."""
from __future__ import annotations

import os
from dataclasses import dataclass

from ..config.loading import checked_config
from ..config.schema import Config
from ..io.paths import path_argument
from ..transfer.pipeline import TransferOptions, run_transfer
from ..transfer.report import markdown_table


@dataclass
class TransferResult:
    """One transfer evaluation: ``results`` is exactly what ``transfer.json`` holds (every row, setting,
    episode and seed); ``out_dir`` the folder of ``transfer.json``/``.md``/``.png`` (``None``: not written)."""

    results: dict
    out_dir: str | None

    @property
    def table(self) -> str:
        """The Markdown table of ``transfer.md``."""
        return markdown_table(self.results)

    def accuracy(self, row: str = "learngene", setting: str | None = None) -> float:
        """Mean test accuracy of ``row`` on ``setting`` (default: the first, e.g. ``5w5s``)."""
        found = [r for r in self.results["rows"] if r["method"] == row]
        if not found:
            raise KeyError(f"no row {row!r}; rows: {', '.join(r['method'] for r in self.results['rows'])}")
        setting = setting or self.results["settings"][0]["name"]
        return found[0]["results"][setting]["mean"]


def evaluate_learngene(cfg: Config, learngene: str | os.PathLike, out_dir: str | None = None, *,
                       descendants: list[str] | None = None, write: bool = True, log=print) -> TransferResult:
    """Evaluate the learngene file ``learngene`` (a run's ``learngene.pt``) and every baseline on test episodes.

    ``cfg``'s ``transfer`` section sets the episodes, shots and fine-tuning; ``out_dir`` (default:
    the learngene's folder) receives ``transfer.json``/``.md``/``.png`` unless ``write`` is false;
    ``descendants``: extra ``family@width`` rows (default ``cfg.transfer.descendants``).
    """
    cfg, path = checked_config(cfg), path_argument(learngene, "learngene")
    out_dir = None if out_dir is None else path_argument(out_dir, "out_dir")
    if descendants is not None and (isinstance(descendants, str) or not all(isinstance(d, str) for d in descendants)):
        raise TypeError(f"descendants must be a list of 'family@width' strings, not {descendants!r:.80}")
    results = run_transfer(cfg, path, out_dir, TransferOptions(descendants, write=write), log=log)
    where = out_dir or os.path.dirname(os.path.abspath(path))
    return TransferResult(results, where if write else None)
