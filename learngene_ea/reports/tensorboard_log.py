"""TensorBoard logs of a run (``runtime.tensorboard: true``), under ``runs/<run>/tb/``.

Per generation: population accuracy min/avg/max, learngene fraction min/avg/max and the
scheduled goal, the best learngene's accuracy, 95% CI and fraction, failed evaluations and
seconds; per transfer row and setting, its test accuracy. Watch a run live with
``tensorboard --logdir runs`` (an optional extra: ``pip install 'learngene-ea[tensorboard]'``).
"""
from __future__ import annotations

import os

from ..errors import UserError


def require_tensorboard():
    """``SummaryWriter``, or one sentence saying how to install it (checked before any compute)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as err:
        raise UserError("runtime.tensorboard is true but TensorBoard is not installed; run "
                        "pip install 'learngene-ea[tensorboard]' (or pip install tensorboard), or set "
                        "runtime.tensorboard=false.") from err
    return SummaryWriter


class TensorBoardLog:
    """Writes a run's logbook records and transfer rows as TensorBoard scalars."""

    def __init__(self, run_dir: str):
        self.writer = require_tensorboard()(log_dir=os.path.join(run_dir, "tb"))

    def generation(self, record: dict) -> None:
        """One logbook record (``evolve.record_generation``), at step ``record["gen"]``."""
        step = record["gen"]
        scalars = {
            "accuracy/min": record["acc_min"], "accuracy/avg": record["acc_avg"], "accuracy/max": record["acc_max"],
            "fraction/min": record["frac_min"], "fraction/avg": record["frac_avg"],
            "fraction/max": record["frac_max"], "fraction/goal": record["goal_fraction"],
            "best/accuracy": record["best_acc"], "best/ci95": record["best_ci95"],
            "best/fraction": record["best_fraction"],
            "run/errors": len(record["errors"]), "run/seconds": record["seconds"],
        }
        for tag, value in scalars.items():
            self.writer.add_scalar(tag, value, step)
        self.writer.flush()

    def transfer(self, results: dict) -> None:
        """Every row's mean test accuracy, one tag per setting (``transfer/<setting>/<method>/<arch>``)."""
        for row in results["rows"]:
            for setting, result in row["results"].items():
                self.writer.add_scalar(f"transfer/{setting}/{row['method']}/{row['arch']}", result["mean"], 0)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
