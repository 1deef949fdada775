"""A whole Pareto front in one table: ``python -m learngene_ea.transfer --learngene runs/<run>/pareto/``.

Every ``learngene-*.pt`` of the folder (``learngene_ea.reports.pareto`` writes them) is evaluated on the
same test episodes and seeds as a single learngene's table. What does not depend on the
learngene (``scratch``, ``pretrained``, ``layerwise``...) is evaluated once, with the first
(smallest) learngene; each learngene gets its own ``learngene``, ``instincts`` and size-matched
``random-learngene`` and ``l1-learngene`` rows. The pre-trained baseline is got once, as for one
learngene (source or target, ``--pretrained``, the keyed cache; every front learngene records the
run's whole compute, so they share it), and ``transfer.target`` works as for one learngene.
The episodes run in this process (not spread over SCOOP workers). Outputs: ``front-transfer.json``,
``.md`` and ``.png`` in the folder (or ``--out``).
"""
from __future__ import annotations

import glob
import os
import time

from ..errors import UserError
from ..core.learngene import load_learngene
from ..reports.files import pyplot, save_figure, write_report_files
from .baselines import baseline_methods
from .episodes import make_settings
from .finetune import Bench
from .jobs import evaluate_transfer
from .pretrain import CacheFolders
from .pipeline import (TransferOptions, check_compatible, check_out_dir, check_unseen_classes, get_pretrained,
                       transfer_device)
from .report import difference_cell, paired_difference
from .target import load_target, target_data, with_resolved_augment

FORMAT = "learngene-ea/front-transfer-v1"
PER_LEARNGENE = ("learngene", "instincts", "random-learngene", "l1-learngene")
COMPARED_WITH = ("l1-learngene", "random-learngene", "scratch", "pretrained")


def front_files(folder: str) -> list[str]:
    """The folder's ``learngene-*.pt`` files, smallest learngene first."""
    paths = glob.glob(os.path.join(folder, "learngene-*.pt"))
    if not paths:
        raise UserError(f"{folder!r} holds no learngene-*.pt files; pass the pareto/ folder of a run "
                        "(runs/<name>/pareto/) or one learngene.pt.")
    return sorted(paths, key=lambda p: (load_learngene(p).fraction, p))


def run_front_transfer(cfg, folder: str, out_dir: str | None = None, options: TransferOptions | None = None,
                       log=print, progress=None) -> dict:
    """Evaluate every learngene of ``folder`` on test episodes; write and return the front's table
    (``options.keep_earlier``: beside an earlier one, as ``front-transfer-2.*``, ``-3``, ...; see
    :class:`~learngene_ea.transfer.pipeline.TransferOptions`; its descendants are not evaluated here)."""
    started, options = time.perf_counter(), options or TransferOptions()
    paths = front_files(folder)
    learngenes = [load_learngene(p) for p in paths]
    first = learngenes[0]
    run_dir = os.path.dirname(os.path.abspath(folder.rstrip(os.sep)))  # pareto/'s run folder
    out_dir = out_dir or folder
    check_out_dir(out_dir, "front's transfer reports")
    cfg, _ = with_resolved_augment(cfg)
    data, data_key = target_data(cfg)
    dataset = load_target(cfg, first.in_channels, log)
    for learngene, path in zip(learngenes, paths):
        check_compatible(cfg.model, learngene, path)
        if not options.allow_seen_classes:
            check_unseen_classes(learngene, data, dataset, path, data_key)
    device = transfer_device(cfg.runtime)
    settings = make_settings(cfg.transfer, dataset)
    folders = CacheFolders(run_dir, cfg.transfer.cache_dir or out_dir)
    pretrained, pretrain_info = get_pretrained(cfg, first, dataset, folders, device, log, options)
    pretrained.eval()
    shared, members = {}, []
    for index, (learngene, path) in enumerate(zip(learngenes, paths)):
        log(f"front learngene {index + 1}/{len(paths)}: {os.path.basename(path)} (fraction {learngene.fraction:.3f})")
        methods = [m for m in baseline_methods(learngene, pretrained, (), cfg.transfer.complement_scale,
                                               fresh_channels=cfg.transfer.fresh_channels)
                   if index == 0 or m.name in PER_LEARNGENE]
        rows = evaluate_transfer(methods, Bench(dataset, cfg.transfer, learngene.in_channels, device, cfg.fitness.metric),
                                 settings, log, progress)
        own = {row["method"]: row["results"] for row in rows if row["method"] in PER_LEARNGENE}
        shared.update({row["method"]: row["results"] for row in rows if row["method"] not in PER_LEARNGENE})
        reference = {**shared, **own}
        members.append({
            "file": os.path.basename(path), "fraction": float(learngene.fraction),
            "num_params": int(learngene.num_params), "id": learngene.meta.get("id"),
            "val_accuracy": learngene.meta.get("accuracy"), "val_ci95": learngene.meta.get("ci95"),
            "rows": own,
            "paired": {s.name: {ref: paired_difference(own["learngene"][s.name]["accuracies"],
                                                       reference[ref][s.name]["accuracies"])
                                for ref in COMPARED_WITH if ref in reference} for s in settings},
        })
    results = {"format": FORMAT, "folder": os.path.abspath(folder), "settings": [s.name for s in settings],
               "labels": {s.name: s.label for s in settings}, "episodes": cfg.transfer.episodes,
               "shared": shared, "members": members, "pretrained": pretrain_info,
               "seconds": time.perf_counter() - started}
    try:
        paths = write_report_files(results, out_dir, "front-transfer", front_markdown, plot_front_transfer,
                                   options.keep_earlier)
    except OSError as err:
        raise UserError(f"Cannot write the front's transfer reports into {out_dir!r} ({err.strerror}); "
                        "pass a writable --out folder.") from err
    log(f"front transfer reports: {paths['md']}, {paths['json']}, {paths['png']}")
    return results


def _pct(result: dict) -> str:
    return f"{100 * result['mean']:.1f} ± {100 * result['ci95']:.1f}"


def front_markdown(results: dict) -> str:
    """One table per setting: each front learngene's test accuracy and its paired differences."""
    lines = []
    for name in results["settings"]:
        shared = ", ".join(f"{method} {_pct(r[name])}" for method, r in results["shared"].items())
        lines += [f"### Pareto front on test classes: {results['labels'][name]} ({results['episodes']} episodes)",
                  "", f"Rows shared by every learngene: {shared}.", "",
                  "| Fraction | Params | Val (as selected) | learngene | " +
                  " | ".join(f"− {ref}" for ref in COMPARED_WITH) + " |",
                  "|--:|--:|--:|--:|" + "--:|" * len(COMPARED_WITH)]
        for m in results["members"]:
            diffs = [m["paired"][name].get(ref) for ref in COMPARED_WITH]
            cells = [difference_cell(d) if d else "–"
                     for d in diffs]
            val = f"{100 * m['val_accuracy']:.1f}" if m["val_accuracy"] is not None else "–"
            lines.append(f"| {100 * m['fraction']:.1f}% | {m['num_params']:,} | {val} | "
                         f"{_pct(m['rows']['learngene'][name])} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def plot_front_transfer(results: dict, path: str) -> None:
    """Test accuracy against learngene fraction: the learngenes, their l1-learngene baselines, and
    the shared scratch and pre-trained rows as horizontal lines (first setting)."""
    plt = pyplot()

    name = results["settings"][0]
    members = results["members"]
    fig, ax = plt.subplots(figsize=(6.5, 4.2), dpi=110)
    xs = [m["fraction"] for m in members]
    for method, style in (("learngene", "o-"), ("l1-learngene", "s--"), ("random-learngene", "^:")):
        ys = [100 * m["rows"][method][name]["mean"] for m in members if method in m["rows"]]
        errs = [100 * m["rows"][method][name]["ci95"] for m in members if method in m["rows"]]
        if ys:
            ax.errorbar(xs[:len(ys)], ys, yerr=errs, fmt=style, capsize=2, label=method)
    for method, color in (("scratch", "grey"), ("pretrained", "black")):
        if method in results["shared"]:
            ax.axhline(100 * results["shared"][method][name]["mean"], color=color, ls=":", lw=1, label=method)
    ax.set_xlabel("learngene fraction")
    ax.set_ylabel(f"test accuracy (%), {results['labels'][name]}")
    ax.legend(fontsize=7, frameon=False)
    ax.set_title("Pareto front on test classes")
    save_figure(fig, path)
