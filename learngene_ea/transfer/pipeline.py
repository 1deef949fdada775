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

from ..config.loading import Config, ConfigError, dataset_label
from ..data import load_dataset
from ..data.base import FewShotDataset
from ..errors import UserError
from ..core.learngene import Learngene, load_learngene
from ..reports.files import plural
from ..fewshot.training import resolve_device
from ..parallel.engines import backend_of, parallel_map, process_count
from ..parallel.process import available_cores, configure_memory, default_threads, set_threads
from .baselines import baseline_methods
from .descendants import arch_label, check_descendant, parse_descendant
from .episodes import episode_digest, make_settings
from .jobs import evaluate_transfer, forget_transfer_context, new_context_key, share_transfer_context
from .pretrain import given_pretrained, load_or_pretrain
from .report import markdown_table, split_words, write_reports
from .target import (describe_data, differences_from_source, load_target, match_channels, source_data, target_data,
                     with_resolved_augment)

FORMAT = "learngene-ea/transfer-v1"


def check_compatible(cfg: Config, learngene: Learngene, path: str) -> None:
    """A recipe whose model differs from the learngene's is a user error (image channels are converted)."""
    if (cfg.model.family, float(cfg.model.width)) != (learngene.family, float(learngene.width)):
        raise ConfigError(f"The learngene {path!r} is {arch_label(learngene.family, learngene.width)} but the "
                          f"recipe's model is {arch_label(cfg.model.family, cfg.model.width)}; pass the run's "
                          "config.yaml (or fix model.family/model.width) and use --descendants for other "
                          "architectures.")


def seen_test_classes(learngene: Learngene, data_cfg, dataset: FewShotDataset) -> list[str]:
    """The dataset's test classes that the learngene was evolved on (its training or validation classes).

    Only for the same dataset (same ``name`` and ``root``; for the synthetic one, the same
    ``seed``, since its classes are drawn from it). Learngenes saved before their classes were
    recorded give an empty list.
    """
    source, classes = learngene.meta.get("data"), learngene.meta.get("classes")
    if not source or not classes or source.get("name") != data_cfg.name:
        return []
    if data_cfg.name == "synthetic" and source.get("seed") != data_cfg.seed:
        return []
    if source.get("root") and data_cfg.root and _absolute(source["root"]) != _absolute(data_cfg.root):
        return []
    seen = set(classes.get("train", [])) | set(classes.get("val", []))
    return [dataset.class_names[i] for i in dataset.splits["test"] if dataset.class_names[i] in seen]


def _absolute(path: str) -> str:
    return os.path.abspath(os.path.expanduser(path))


def check_unseen_classes(learngene: Learngene, data_cfg, dataset: FewShotDataset, path: str,
                         key: str = "data") -> None:
    """Refuse test classes that the learngene saw while it evolved: that would not be transfer."""
    seen = seen_test_classes(learngene, data_cfg, dataset)
    if seen:
        shown = ", ".join(repr(name) for name in seen[:3]) + (", ..." if len(seen) > 3 else "")
        fix = "use the class split of its run (its config.yaml)" if key == "data" else \
            "name the test classes in transfer.target.split"
        raise ConfigError(f"{len(seen)} of the {len(dataset.splits['test'])} test classes ({shown}) were training "
                          f"or validation classes of the evolution that made {path!r}, so the table would not "
                          f"measure unseen classes; {fix} or pass --allow-seen-classes.")


def get_pretrained(cfg: Config, learngene: Learngene, target: FewShotDataset, run_dir: str, cache_dir: str,
                   device, log, pretrained_path: str | None = None):
    """The pre-trained network of the baselines and its info: given, or trained on the source or the target.

    Trained on the source's training classes (``transfer.pretrain_on: source``) or the target's
    (``target``); cached in ``cache_dir``, and reused from the run folder only when its key matches.
    """
    family, width, channels = learngene.family, learngene.width, learngene.in_channels
    if pretrained_path:
        model, info = given_pretrained(pretrained_path, family, width, channels, device)
        log(f"pre-trained baseline: the given network {pretrained_path}")
        return model, info
    on = cfg.transfer.pretrain_on
    if on == "target":
        data, key = target_data(cfg)
        if not target.splits["train"]:
            raise ConfigError(f"'transfer.pretrain_on' is 'target' but {key} has no training classes; give "
                              f"{key}.split a train entry (e.g. {{train: 0.5, test: 0.5}}), or pretrain on the "
                              "source.")
        dataset = target
    else:
        data, found_in = source_data(cfg, learngene, run_dir)
        try:
            dataset = match_channels(load_dataset(data), channels)
        except UserError as err:  # its keys are the source's, not the user's: say whose they are
            where = f"{found_in}: {data.name}" + (f" at {data.root!r}" if data.root else "")
            raise UserError(f"The source data the pre-trained baseline trains on ({where}) cannot be loaded "
                            f"({str(err).rstrip('.')}); pass --pretrained FILE or set "
                            "transfer.pretrain_on=target.") from err
    others = [run_dir] if os.path.abspath(run_dir) != os.path.abspath(cache_dir) else []
    return load_or_pretrain(cfg, dataset, family, width, channels, cache_dir, device, log,
                            learngene.meta.get("training_images"), data_cfg=data, trained_on=on,
                            also_look_in=others)


def run_transfer(cfg: Config, learngene_path: str, out_dir: str | None = None, descendants=None,
                 log=print, progress=None, write=True, allow_seen_classes: bool = False,
                 pretrained_path: str | None = None, keep_earlier: bool = False) -> dict:
    """Evaluate the learngene at ``learngene_path`` and every baseline on test episodes.

    The episodes come from ``transfer.target`` (else the recipe data's test split), the
    pre-trained baseline from the source or the target (``transfer.pretrain_on``) or the file
    ``pretrained_path``. ``descendants``: ``family@width`` strings (default
    ``cfg.transfer.descendants``). ``out_dir`` (default: the learngene's folder, or its sub-folder
    ``transfer-<target>`` for a target) receives
    ``transfer.json``/``.md``/``.png`` unless ``write`` is false, and the pre-trained cache unless
    ``transfer.cache_dir`` is set; nothing else is written (``keep_earlier``: an earlier report there
    is kept, these are ``transfer-2.*``, ``-3``, ...). Returns the results dict written to
    ``transfer.json``. Under SCOOP with several processes, pre-training runs here and the
    episodes are spread over every process.
    """
    started = time.perf_counter()
    learngene_path = os.fspath(learngene_path)
    learngene = load_learngene(learngene_path)
    run_dir = os.path.dirname(os.path.abspath(learngene_path))
    # another dataset's table goes beside the run's own, never over it
    out_dir = out_dir or (run_dir if cfg.transfer.target is None else
                          os.path.join(run_dir, f"transfer-{dataset_label(cfg.transfer.target)}"))
    cache_dir = cfg.transfer.cache_dir or out_dir
    cfg, augment_from = with_resolved_augment(cfg)
    tcfg = cfg.transfer
    device = resolve_device(cfg.runtime.device)
    if cfg.runtime.threads > 0:
        set_threads(cfg.runtime.threads)
    configure_memory(cfg.runtime)  # threads: set above, all cores for the origin's pre-training
    check_compatible(cfg, learngene, learngene_path)
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
    data, data_key = target_data(cfg)
    conversion = []  # the line saying that the images are converted to the learngene's channels, if they are
    dataset = load_target(cfg, learngene.in_channels, conversion.append)
    for line in conversion:
        log(line)
    timings["load_dataset"] = time.perf_counter() - t
    source, source_found_in = source_data(cfg, learngene, run_dir)
    differences = differences_from_source(learngene, source, data, data_key)
    if differences:
        log("note: the test images are not those the learngene was evolved on: " + ", ".join(differences))
    # validation classes (transfer.classes val) are seen by design: selection looked at them, never at the test
    seen = seen_test_classes(learngene, data, dataset) if tcfg.classes == "test" else []
    if not allow_seen_classes and tcfg.classes == "test":
        check_unseen_classes(learngene, data, dataset, learngene_path, data_key)
    elif seen:
        log(f"warning: {len(seen)} test classes were seen by the learngene's evolution (--allow-seen-classes)")
    settings = make_settings(tcfg, dataset)

    t = time.perf_counter()
    pretrained, pretrain_info = get_pretrained(cfg, learngene, dataset, run_dir, cache_dir, device, log,
                                               pretrained_path)
    pretrained.eval()
    timings["pretrained"] = time.perf_counter() - t

    methods = baseline_methods(learngene, pretrained, extra)
    processes, engine = process_count(cfg.runtime), {"scoop": "SCOOP", "ray": "Ray"}.get(backend_of(cfg.runtime))
    log(f"transfer: {plural(len(methods), 'row')} x {plural(len(settings), 'setting')} x "
        f"{plural(tcfg.episodes, 'episode')} on {split_words(tcfg.classes)} "
        f"({device}" + (f", spread over {processes} {engine} processes)" if processes > 1 else ")"))
    t = time.perf_counter()
    map_function, key, threads = None, None, torch.get_num_threads()
    if processes > 1:
        key = new_context_key()
        share_transfer_context(key, cfg, learngene, pretrained, extra,
                               (cfg, dataset, settings, methods, device, learngene.in_channels))
        map_function = parallel_map(cfg.runtime, hint="no transfer report was written; run the "
                                    f"transfer again (the pre-trained baseline is cached in {cache_dir}).")
        # the workers are busy now too: the origin goes back to its share of the cores
        set_threads(cfg.runtime.threads if cfg.runtime.threads > 0 else default_threads())
    try:
        rows = evaluate_transfer(methods, dataset, settings, tcfg, learngene.in_channels, device,
                                 cfg.fitness.metric, log, progress, map_function, key)
    finally:
        set_threads(threads)
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
                       "augment_from": augment_from,
                       "metric": cfg.fitness.metric, "batchnorm": "training mode while fine-tuning",
                       "trained_parameters": "all (new N-way head)", "lr_schedule": "constant"},
        "source": {**describe_data(source, None, source_found_in),
                   "train_classes": pretrain_info.get("classes") if pretrain_info["trained_on"] == "source" else None,
                   "evolution_classes": {split: len(names) for split, names in
                                         (learngene.meta.get("classes") or {}).items()}},
        "target": {**describe_data(data, dataset, data_key), "channels_converted_to": learngene.in_channels
                   if conversion else None, "differences_from_source": differences},
        "dataset": {"name": dataset.name, "config": dataclasses.asdict(data), "images": int(dataset.images.shape[0]),
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
            paths = write_reports(results, out_dir, keep_earlier)
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
        set_threads(available_cores())
    results = run_transfer(cfg, os.path.join(run_dir, "learngene.pt"), run_dir, log=log)
    log(markdown_table(results))
    return results
