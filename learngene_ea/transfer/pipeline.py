"""The transfer pipeline: from a learngene file to the table, for the command line and the end of a run.

:func:`run_transfer` checks the learngene against the recipe and the dataset (same model, unseen
test classes, descendants that can inherit it), draws the settings, gets the pre-trained
baseline and the ``slimming`` row's network, evaluates every row (spread over SCOOP processes
when there are several) and writes the reports. :func:`transfer_after_run` is what
``learngene_ea.run`` calls at the end of a run.
"""
from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass

import torch

from ..config.loading import dataset_label
from ..config.schema import Config, ConfigError, ModelConfig, RuntimeConfig
from ..data.base import FewShotDataset
from ..errors import UserError
from ..core.devices import resolve_device
from ..core.learngene import Learngene, load_learngene
from ..io.paths import writable_problem
from ..reports.files import plural, split_words
from ..parallel.engines import backend_of, parallel_map, process_count
from ..core.threads import available_cores, set_threads
from ..fewshot.process import configure_memory
from ..parallel.process import default_threads
from .baselines import baseline_methods
from ..core.traced import arch_label
from .descendants import check_descendant, parse_descendant
from .episodes import episode_digest, make_settings
from .finetune import Bench
from .jobs import EpisodeContext, evaluate_transfer, forget_transfer_context, new_context_key, share_transfer_context
from .pretrain import Arch, CacheFolders, PretrainSource, given_pretrained, load_or_pretrain
from .report import markdown_table, write_reports
from .slimming import get_slimming
from .target import (describe_data, differences_from_source, load_target, pretrain_data, source_data, target_data,
                     with_resolved_augment)

FORMAT = "learngene-ea/transfer-v1"


def check_compatible(model: ModelConfig, learngene: Learngene, path: str) -> None:
    """A recipe whose ``model`` section differs from the learngene's is a user error (image channels are
    converted)."""
    if (model.network, float(model.width)) != (learngene.family, float(learngene.width)):
        raise ConfigError(f"The learngene {path!r} is {arch_label(learngene.family, learngene.width)} but the "
                          f"recipe's model is {arch_label(model.network, model.width)}; pass the run's "
                          "config.yaml (or fix model.family/model.width) and use --descendants for other "
                          "architectures.")
    check_descendant(learngene, learngene.family, learngene.width)  # a factory that traces differently now: before
    # any pre-training or row, not when the learngene row is reached


def check_out_dir(out_dir: str, what: str = "transfer reports") -> None:
    """A folder the reports cannot be written into (a read-only run folder), said before any compute."""
    problem = writable_problem(out_dir)
    if problem:
        raise UserError(f"Cannot write the {what} into {out_dir!r} ({problem}); pass a writable --out folder.")


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


@dataclass
class TransferOptions:
    """What a transfer evaluation does beyond the recipe's ``transfer`` section.

    ``descendants``: ``family@width`` rows (default ``transfer.descendants``); ``write``: the
    reports (else only the returned dict); ``allow_seen_classes``: test classes the evolution saw;
    ``pretrained_path``: a network of the user's for the pre-trained rows; ``keep_earlier``: an
    earlier report in the folder stays, the new one is ``transfer-2.*`` (``-3``, ...); ``progress``:
    a tqdm-like bar factory ``progress(iterable, total, desc, unit=...)`` that shows the pre-training's
    and slimming's steps and the episodes (None: no bars, ``--quiet``).
    """

    descendants: list[str] | None = None
    write: bool = True
    allow_seen_classes: bool = False
    pretrained_path: str | None = None
    keep_earlier: bool = False
    progress: object = None


@dataclass
class EpisodeData:
    """The episodes' data: its section and key, the dataset, the line saying its channels were converted
    (if they were), the source the learngene evolved on, how they differ, test classes the evolution saw."""

    data: object
    key: str
    dataset: FewShotDataset
    conversion: list
    source: object
    source_found_in: str
    differences: list
    seen: list


def transfer_device(runtime: RuntimeConfig):
    """This process set up for a transfer evaluation (threads when ``runtime.threads`` says, memory); its device."""
    if runtime.threads > 0:
        set_threads(runtime.threads)
    configure_memory(runtime)  # threads: set above, else all cores for the origin's pre-training
    return resolve_device(runtime.device)


def get_pretrained(cfg: Config, learngene: Learngene, target: FewShotDataset, folders: CacheFolders, device,
                   log, options: TransferOptions | None = None):
    """The pre-trained network of the baselines and its info: given, or trained on the source or the target.

    Trained on the source's training classes (``transfer.pretrain_on: source``) or the target's
    (``target``); cached in ``folders.cache_dir``, and reused from the run folder only when its key matches.
    """
    options = options or TransferOptions()
    pretrained_path = options.pretrained_path
    if pretrained_path:
        model, info = given_pretrained(pretrained_path, learngene.family, learngene.width, learngene.in_channels,
                                       device)
        log(f"pre-trained baseline: the given network {pretrained_path}")
        return model, info
    dataset, source = pretrain_source(cfg, learngene, target, folders, options)
    return load_or_pretrain(cfg, dataset, Arch.of(learngene), folders.cache_dir, device, log, source)


def pretrain_source(cfg: Config, learngene: Learngene, target: FewShotDataset, folders: CacheFolders,
                    options: TransferOptions) -> tuple[FewShotDataset, PretrainSource]:
    """What every pre-trained network of the table learns from (the source's or the target's training classes,
    the evolution's images) and where its cache is also looked for (the run folder, besides ``cache_dir``)."""
    data, dataset = pretrain_data(cfg, learngene, target, folders.run_dir)
    return dataset, PretrainSource(data, cfg.transfer.pretrain_on, learngene.meta.get("training_images"),
                                   folders.also_look_in(), options.progress)


def get_descendant_pretrained(cfg: Config, learngene: Learngene, target: FewShotDataset, folders: CacheFolders,
                              log, options: TransferOptions, extra) -> tuple[dict, dict]:
    """Every ``extra`` descendant architecture with its own pre-trained network, trained on the same images for
    as many steps as the learngene's (equal compute, on ``runtime.device``) and cached alike:
    ``{(family, width): network}`` and ``{label: info}``; the networks are None beside a given one
    (``--pretrained``: its data may not be here)."""
    if not extra or options.pretrained_path:
        if extra:
            log("scalability rows: no pre-trained network of their own beside a given one (--pretrained)")
        return dict.fromkeys(extra), {}
    device = resolve_device(cfg.runtime.device)  # this process's, as transfer_device resolved it
    dataset, source = pretrain_source(cfg, learngene, target, folders, options)
    networks, infos = {}, {}
    for family, width in extra:
        model, info = load_or_pretrain(cfg, dataset, Arch(family, width, learngene.in_channels), folders.cache_dir,
                                       device, log, source)
        networks[family, width], infos[arch_label(family, width)] = model.eval(), info
    return networks, infos


def extra_descendants(learngene: Learngene, texts: list[str], log) -> list[tuple[str, float]]:
    """The ``family@width`` descendants to evaluate besides the learngene's own architecture, checked."""
    seen, extra = {(learngene.family, float(learngene.width))}, []
    for family, width in [parse_descendant(d, learngene.width) for d in texts]:
        if (family, width) in seen:
            log(f"descendant {arch_label(family, width)}: already evaluated, skipped")
            continue
        seen.add((family, width))
        written = check_descendant(learngene, family, width)
        log(f"descendant {arch_label(family, width)}: inherits into {len(written)} gene layers")
        extra.append((family, width))
    return extra


def episode_data(cfg: Config, learngene: Learngene, path: str, allow_seen_classes: bool, log) -> EpisodeData:
    """The episodes' data, loaded and checked: unseen test classes unless allowed, differences noted."""
    data, data_key = target_data(cfg)
    conversion = []  # the line saying that the images are converted to the learngene's channels, if they are
    dataset = load_target(cfg, learngene.in_channels, conversion.append)
    for line in conversion:
        log(line)
    source, source_found_in = source_data(cfg, learngene, os.path.dirname(os.path.abspath(path)))
    differences = differences_from_source(learngene, source, data, data_key)
    if differences:
        log("note: the test images are not those the learngene was evolved on: " + ", ".join(differences))
    # validation classes (transfer.classes val) are seen by design: selection looked at them, never at the test
    classes = cfg.transfer.classes
    seen = seen_test_classes(learngene, data, dataset) if classes == "test" else []
    if not allow_seen_classes and classes == "test":
        check_unseen_classes(learngene, data, dataset, path, data_key)
    elif seen:
        log(f"warning: {len(seen)} test classes were seen by the learngene's evolution (--allow-seen-classes)")
    return EpisodeData(data, data_key, dataset, conversion, source, source_found_in, differences, seen)


def evaluate_rows(cfg: Config, learngene: Learngene, table: "Rows", bench: Bench, settings, log, progress=None):
    """Every row on every setting, spread over the engine's processes when there are several."""
    processes = process_count(cfg.runtime)
    engine = {"scoop": "SCOOP", "ray": "Ray"}.get(backend_of(cfg.runtime))
    log(f"transfer: {plural(len(table.methods), 'row')} x {plural(len(settings), 'setting')} x "
        f"{plural(cfg.transfer.episodes, 'episode')} on {split_words(cfg.transfer.classes)} "
        f"({bench.device}" + (f", spread over {processes} {engine} processes)" if processes > 1 else ")"))
    map_function, key, threads = None, None, torch.get_num_threads()
    if processes > 1:
        key = new_context_key()
        share_transfer_context(key, cfg, learngene, table.pretrained, table.descendants,
                               EpisodeContext(settings, table.methods, bench), table.slimming)
        map_function = parallel_map(cfg.runtime, hint="no transfer report was written; run the "
                                    f"transfer again (the pre-trained baseline is cached in {table.cache_dir}).")
        # the workers are busy now too: the origin goes back to its share of the cores
        set_threads(cfg.runtime.threads if cfg.runtime.threads > 0 else default_threads())
    try:
        return evaluate_transfer(table.methods, bench, settings, log, progress, map_function, key)
    finally:
        set_threads(threads)
        forget_transfer_context(key)


@dataclass
class Rows:
    """The rows of a transfer table (``methods``) and what they stand on: the pre-trained network, its
    cache folder, the extra descendants' architectures (``(family, width)`` -> their own pre-trained network,
    or None), the ``slimming`` row's learngene (or None)."""

    methods: list
    pretrained: object
    cache_dir: str
    descendants: list
    slimming: Learngene | None = None


@dataclass
class Outcome:
    """What a transfer evaluation made, for :func:`results_record`: the settings and their rows, the info of the
    pre-trained network, of the slimming row's and of each extra descendant's own pre-trained network, the extra
    descendants ``(family, width)``, the device, where ``transfer.augment`` came from, the timings."""

    settings: list
    rows: list
    pretrained: dict
    slimming: dict
    pretrained_descendants: dict
    extra: list
    device: object
    augment_from: str
    timings: dict


def results_record(cfg: Config, learngene: Learngene, path: str, test: EpisodeData, outcome: Outcome) -> dict:
    """What ``transfer.json`` holds."""
    pretrain_info, dataset, data = outcome.pretrained, test.dataset, test.data
    return {
        "format": FORMAT,
        "learngene": {"path": os.path.abspath(path), "family": learngene.family,
                      "width": learngene.width, "in_channels": learngene.in_channels,
                      "num_params": int(learngene.num_params), "fraction": float(learngene.fraction),
                      "num_gene_params": int(learngene.spec.num_gene_params()),
                      "channels_kept": {g: int(m.sum()) for g, m in learngene.masks.items()},
                      "meta": learngene.meta},
        "evaluation": {**dataclasses.asdict(cfg.transfer), "descendants": [arch_label(*d) for d in outcome.extra],
                       "augment_from": outcome.augment_from,
                       "metric": cfg.fitness.metric, "batchnorm": "training mode while fine-tuning",
                       "trained_parameters": "all (new N-way head)", "lr_schedule": "constant"},
        "source": {**describe_data(test.source, None, test.source_found_in),
                   "train_classes": pretrain_info.get("classes") if pretrain_info["trained_on"] == "source" else None,
                   "evolution_classes": {split: len(names) for split, names in
                                         (learngene.meta.get("classes") or {}).items()}},
        "target": {**describe_data(data, dataset, test.key), "channels_converted_to": learngene.in_channels
                   if test.conversion else None, "differences_from_source": test.differences},
        "dataset": {"name": dataset.name, "config": dataclasses.asdict(data), "images": int(dataset.images.shape[0]),
                    "image_size": dataset.image_size, "channels": dataset.channels,
                    "train_classes": len(dataset.splits["train"]), "val_classes": len(dataset.splits["val"]),
                    "test_classes": len(dataset.splits["test"]), "test_class_ids": list(dataset.splits["test"]),
                    "test_classes_seen_by_learngene": test.seen},
        "device": str(outcome.device),
        "pretrained": pretrain_info,
        "pretrained_descendants": outcome.pretrained_descendants,
        "slimming": outcome.slimming,
        "settings": [{"name": s.name, "label": s.label, "n_way": s.n_way, "k_shot": s.k_shot, "n_query": s.n_query,
                      "seed": s.seed, "episode_seeds": s.episode_seeds,
                      "episodes": [{"seed": seed, "digest": episode_digest(e), "classes": list(e.class_ids),
                                    "support": e.support.tolist(), "query": e.query.tolist()}
                                   for seed, e in zip(s.episode_seeds, s.episodes)]}
                     for s in outcome.settings],
        "rows": outcome.rows,
        "timings": outcome.timings,
    }


def run_transfer(cfg: Config, learngene_path: str, out_dir: str | None = None, options: TransferOptions | None = None,
                 log=print) -> dict:
    """Evaluate the learngene at ``learngene_path`` and every baseline on test episodes.

    The episodes come from ``transfer.target`` (else the recipe data's test split), the
    pre-trained baseline from the source or the target (``transfer.pretrain_on``) or the file
    ``options.pretrained_path``. ``out_dir`` (default: the learngene's folder, or its sub-folder
    ``transfer-<target>`` for a target) receives ``transfer.json``/``.md``/``.png`` unless
    ``options.write`` is false, and the pre-trained cache unless ``transfer.cache_dir`` is set;
    nothing else is written (see :class:`TransferOptions`). Returns the results dict written to
    ``transfer.json``. Under SCOOP with several processes, pre-training runs here and the
    episodes are spread over every process.
    """
    started, options = time.perf_counter(), options or TransferOptions()
    learngene_path = os.fspath(learngene_path)
    learngene = load_learngene(learngene_path)
    run_dir = os.path.dirname(os.path.abspath(learngene_path))
    # another dataset's table goes beside the run's own, never over it
    out_dir = out_dir or (run_dir if cfg.transfer.target is None else
                          os.path.join(run_dir, f"transfer-{dataset_label(cfg.transfer.target)}"))
    cache_dir = cfg.transfer.cache_dir or out_dir
    if options.write:
        check_out_dir(out_dir)
    cfg, augment_from = with_resolved_augment(cfg)
    device = transfer_device(cfg.runtime)
    check_compatible(cfg.model, learngene, learngene_path)
    extra = extra_descendants(learngene, cfg.transfer.descendants if options.descendants is None
                              else options.descendants, log)
    t = time.perf_counter()
    test = episode_data(cfg, learngene, learngene_path, options.allow_seen_classes, log)
    timings = {"load_dataset": time.perf_counter() - t}
    settings = make_settings(cfg.transfer, test.dataset)
    t = time.perf_counter()
    folders = CacheFolders(run_dir, cache_dir)
    pretrained, pretrain_info = get_pretrained(cfg, learngene, test.dataset, folders, device, log, options)
    pretrained.eval()
    descendants, own_info = get_descendant_pretrained(cfg, learngene, test.dataset, folders, log, options, extra)
    timings["pretrained"] = time.perf_counter() - t
    t = time.perf_counter()
    slimming, slimming_info = get_slimming(cfg, learngene, test.dataset, folders, device, log, options)
    timings["slimming"] = time.perf_counter() - t
    t = time.perf_counter()
    methods = baseline_methods(learngene, pretrained, descendants, cfg.transfer.complement_scale, slimming,
                               cfg.transfer.fresh_channels)
    table = Rows(methods, pretrained, cache_dir, descendants, slimming)
    bench = Bench(test.dataset, cfg.transfer, learngene.in_channels, device, cfg.fitness.metric)
    rows = evaluate_rows(cfg, learngene, table, bench, settings, log, options.progress)
    timings["evaluation"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - started
    outcome = Outcome(settings=settings, rows=rows, pretrained=pretrain_info, slimming=slimming_info,
                      pretrained_descendants=own_info, extra=extra, device=device, augment_from=augment_from,
                      timings=timings)
    results = results_record(cfg, learngene, learngene_path, test, outcome)
    if options.write:
        write_transfer_reports(results, out_dir, options.keep_earlier, log)
    return results


def write_transfer_reports(results: dict, out_dir: str, keep_earlier: bool, log) -> None:
    """``transfer.json``/``.md``/``.png`` in ``out_dir`` (see :func:`write_reports`); a folder that refuses
    them is one sentence."""
    try:
        paths = write_reports(results, out_dir, keep_earlier)
    except OSError as err:
        raise UserError(f"Cannot write the transfer reports into {out_dir!r} ({err.strerror}); "
                        "pass a writable --out folder.") from err
    log(f"transfer reports: {paths['md']}, {paths['json']}, {paths['png']}")


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
