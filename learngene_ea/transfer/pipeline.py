"""The transfer pipeline: from a learngene file to the table, for the command line and the end of a run.

:func:`run_transfer` checks the learngene against the recipe and the dataset (same model, unseen
test classes, descendants that can inherit it), draws the settings, gets the pre-trained
baseline, evaluates every row (spread over SCOOP processes when there are several) and writes
the reports. :func:`transfer_after_run` is what ``learngene_ea.run`` calls at the end of a run.
"""
from __future__ import annotations

import dataclasses
import os
import time

import torch

from ..config import Config, ConfigError
from ..data import load_dataset
from ..data.base import FewShotDataset
from ..errors import UserError
from ..fitness import configure_memory
from ..learngene import Learngene, load_learngene
from ..training import resolve_device
from ..engines import backend_of, parallel_map, process_count
from ..workers import available_cores, default_threads
from .baselines import baseline_methods
from .descendants import arch_label, check_descendant, parse_descendant
from .episodes import episode_digest, make_settings
from .jobs import evaluate_transfer, forget_transfer_context, new_context_key, share_transfer_context
from .pretrain import PRETRAINED_FILE, load_or_pretrain
from .report import markdown_table, write_reports

FORMAT = "learngene-ea/transfer-v1"


def check_compatible(cfg: Config, learngene: Learngene, dataset: FewShotDataset, path: str) -> None:
    """A recipe whose model or image channels differ from the learngene's is a user error."""
    if (cfg.model.family, float(cfg.model.width)) != (learngene.family, float(learngene.width)):
        raise ConfigError(f"The learngene {path!r} is {arch_label(learngene.family, learngene.width)} but the "
                          f"recipe's model is {arch_label(cfg.model.family, cfg.model.width)}; pass the run's "
                          "config.yaml (or fix model.family/model.width) and use --descendants for other "
                          "architectures.")
    if dataset.channels != learngene.in_channels:
        raise ConfigError(f"The learngene {path!r} reads {learngene.in_channels}-channel images but the "
                          f"dataset '{cfg.data.name}' has {dataset.channels}; use the dataset it was evolved on.")


def seen_test_classes(learngene: Learngene, data_cfg, dataset: FewShotDataset) -> list[str]:
    """The dataset's test classes that the learngene was evolved on (its training or validation classes).

    Only for the same dataset (same ``data.name``; for the synthetic one, the same ``data.seed``,
    since its classes are drawn from it). Learngenes saved before their classes were recorded
    give an empty list.
    """
    source, classes = learngene.meta.get("data"), learngene.meta.get("classes")
    if not source or not classes or source.get("name") != data_cfg.name:
        return []
    if data_cfg.name == "synthetic" and source.get("seed") != data_cfg.seed:
        return []
    seen = set(classes.get("train", [])) | set(classes.get("val", []))
    return [dataset.class_names[i] for i in dataset.splits["test"] if dataset.class_names[i] in seen]


def check_unseen_classes(learngene: Learngene, data_cfg, dataset: FewShotDataset, path: str) -> None:
    """Refuse test classes that the learngene saw while it evolved: that would not be transfer."""
    seen = seen_test_classes(learngene, data_cfg, dataset)
    if seen:
        shown = ", ".join(repr(name) for name in seen[:3]) + (", ..." if len(seen) > 3 else "")
        raise ConfigError(f"{len(seen)} of the {len(dataset.splits['test'])} test classes ({shown}) were training "
                          f"or validation classes of the evolution that made {path!r}, so the table would not "
                          "measure unseen classes; use the class split of its run (its config.yaml) or pass "
                          "--allow-seen-classes.")


def run_transfer(cfg: Config, learngene_path: str, out_dir: str | None = None, descendants=None,
                 log=print, progress=None, write=True, allow_seen_classes: bool = False) -> dict:
    """Evaluate the learngene at ``learngene_path`` and every baseline on test episodes.

    ``descendants``: ``family@width`` strings (default ``cfg.transfer.descendants``).
    ``out_dir`` (default: the learngene's folder) receives ``transfer.json``/``.md``/``.png``
    unless ``write`` is false; the pre-trained baseline is cached next to the learngene.
    Returns the results dict written to ``transfer.json``. Under SCOOP with several processes,
    pre-training runs here and the episodes are spread over every process.
    """
    started = time.perf_counter()
    learngene_path = os.fspath(learngene_path)
    learngene = load_learngene(learngene_path)
    run_dir = os.path.dirname(os.path.abspath(learngene_path))
    out_dir = out_dir or run_dir
    tcfg = cfg.transfer
    device = resolve_device(cfg.runtime.device)
    if cfg.runtime.threads > 0:
        torch.set_num_threads(cfg.runtime.threads)
    configure_memory(cfg.runtime)  # threads: set above, all cores for the origin's pre-training
    specs = [parse_descendant(d, learngene.width) for d in (tcfg.descendants if descendants is None else descendants)]
    seen, extra = {(learngene.family, float(learngene.width))}, []
    for family, width in specs:
        if (family, width) in seen:
            log(f"descendant {arch_label(family, width)}: already evaluated, skipped")
            continue
        seen.add((family, width))
        written = check_descendant(learngene, family, width)
        log(f"descendant {arch_label(family, width)}: inherits into {len(written)} gene layers")
        extra.append((family, width))

    timings = {}
    t = time.perf_counter()
    dataset = load_dataset(cfg.data)
    timings["load_dataset"] = time.perf_counter() - t
    check_compatible(cfg, learngene, dataset, learngene_path)
    seen = seen_test_classes(learngene, cfg.data, dataset)
    if not allow_seen_classes:
        check_unseen_classes(learngene, cfg.data, dataset, learngene_path)
    elif seen:
        log(f"warning: {len(seen)} test classes were seen by the learngene's evolution (--allow-seen-classes)")
    meta_dataset = learngene.meta.get("dataset")
    if meta_dataset and meta_dataset != cfg.data.name:
        log(f"note: the learngene was evolved on '{meta_dataset}', evaluated here on '{cfg.data.name}'")
    settings = make_settings(tcfg, dataset)

    t = time.perf_counter()
    pretrained, pretrain_info = load_or_pretrain(cfg, dataset, learngene.family, learngene.width,
                                                 learngene.in_channels, os.path.join(run_dir, PRETRAINED_FILE),
                                                 device, log, learngene.meta.get("training_images"))
    pretrained.eval()
    timings["pretrained"] = time.perf_counter() - t

    methods = baseline_methods(learngene, pretrained, extra)
    processes, engine = process_count(cfg.runtime), {"scoop": "SCOOP", "ray": "Ray"}.get(backend_of(cfg.runtime))
    log(f"transfer: {len(methods)} rows x {len(settings)} settings x {tcfg.episodes} episodes on test classes "
        f"({device}" + (f", spread over {processes} {engine} processes)" if processes > 1 else ")"))
    t = time.perf_counter()
    map_function, key, threads = None, None, torch.get_num_threads()
    if processes > 1:
        key = new_context_key()
        share_transfer_context(key, cfg, learngene, pretrained, extra,
                               (cfg, dataset, settings, methods, device, learngene.in_channels))
        map_function = parallel_map(cfg.runtime, hint="no transfer report was written; run the "
                                    "transfer again (the pre-trained baseline is cached next to the learngene).")
        # the workers are busy now too: the origin goes back to its share of the cores
        torch.set_num_threads(cfg.runtime.threads if cfg.runtime.threads > 0 else default_threads())
    try:
        rows = evaluate_transfer(methods, dataset, settings, tcfg, learngene.in_channels, device,
                                 cfg.fitness.metric, log, progress, map_function, key)
    finally:
        torch.set_num_threads(threads)
        forget_transfer_context(key)
    timings["evaluation"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - started

    results = {
        "format": FORMAT,
        "learngene": {"path": os.path.abspath(learngene_path), "family": learngene.family,
                      "width": learngene.width, "in_channels": learngene.in_channels,
                      "num_params": int(learngene.num_params), "fraction": float(learngene.fraction),
                      "num_gene_params": int(learngene.spec.num_gene_params()),
                      "channels_kept": {g: int(m.sum()) for g, m in learngene.masks.items()},
                      "meta": learngene.meta},
        "evaluation": {**dataclasses.asdict(tcfg), "descendants": [arch_label(*d) for d in extra],
                       "metric": cfg.fitness.metric, "batchnorm": "training mode while fine-tuning",
                       "trained_parameters": "all (new N-way head)", "lr_schedule": "constant"},
        "dataset": {"name": dataset.name, "config": dataclasses.asdict(cfg.data), "images": int(dataset.images.shape[0]),
                    "image_size": dataset.image_size, "channels": dataset.channels,
                    "train_classes": len(dataset.splits["train"]), "val_classes": len(dataset.splits["val"]),
                    "test_classes": len(dataset.splits["test"]), "test_class_ids": list(dataset.splits["test"]),
                    "test_classes_seen_by_learngene": seen},
        "device": str(device),
        "pretrained": pretrain_info,
        "settings": [{"name": s.name, "label": s.label, "n_way": s.n_way, "k_shot": s.k_shot, "n_query": s.n_query,
                      "seed": s.seed, "episode_seeds": s.episode_seeds,
                      "episodes": [{"seed": seed, "digest": episode_digest(e), "classes": list(e.class_ids),
                                    "support": e.support.tolist(), "query": e.query.tolist()}
                                   for seed, e in zip(s.episode_seeds, s.episodes)]}
                     for s in settings],
        "rows": rows,
        "timings": timings,
    }
    if write:
        try:
            paths = write_reports(results, out_dir)
        except OSError as err:
            raise UserError(f"Cannot write the transfer reports into {out_dir!r} ({err.strerror}); "
                            "pass a writable --out folder.") from err
        log(f"transfer reports: {paths['md']}, {paths['json']}, {paths['png']}")
    return results


def transfer_after_run(cfg: Config, run_dir: str, log=print) -> dict:
    """The transfer evaluation at the end of an evolution run, on ``run_dir/learngene.pt``.

    The pre-trained baseline trains in the origin process alone: the SCOOP workers are idle by
    then, so unless ``runtime.threads`` says otherwise the origin takes every core of its host.
    The episodes are then spread over all SCOOP processes (:func:`run_transfer`).
    """
    if cfg.runtime.threads <= 0:
        torch.set_num_threads(available_cores())
    results = run_transfer(cfg, os.path.join(run_dir, "learngene.pt"), run_dir, log=log)
    log(markdown_table(results))
    return results
