"""Every row on every setting: in this process, or as one SCOOP job per (method, setting, episode).

Under SCOOP the origin shares one context (recipe, learngene, pre-trained weights, the
``slimming`` row's learngene) with every worker once, through SCOOP's shared constants; each
job is then four small values. A process rebuilds the dataset, episodes and methods from the
context on its first job and keeps them.
Since every episode record depends only on the episode's seeds, the rows are the same whichever
process computed which job.
"""
from __future__ import annotations

import itertools
import os
from dataclasses import dataclass

from ..config.schema import Config
from ..parallel.process import configure_process
from ..core.learngene import Learngene
from ..core.backbone import Backbone
from ..parallel.engines import forget_constant, share_constant, shared_constant, spreads
from ..parallel.scoop_engine import worker_device
from .baselines import Method, baseline_methods
from .episodes import Setting, make_settings
from .finetune import Bench, evaluate_episode, evaluate_method, summarise_episodes
from .pretrain import cpu_state, pretrained_from_state
from .report import add_paired_differences
from .target import load_target

# Process-wide: an episode job is a plain function call in any process (SCOOP's map), so it finds what it
# runs on by key. Context key -> its EpisodeContext in this process; the ids that make keys unique here.
_CONTEXTS: dict = {}
_CONTEXT_IDS = itertools.count()


@dataclass
class EpisodeContext:
    """What a process needs to run any episode job of one transfer evaluation: the settings, the rows'
    methods and the bench they are fine-tuned and scored on."""

    settings: list
    methods: list
    bench: Bench


def _new_row(method: Method) -> dict:
    return {"method": method.name, "arch": method.arch, "family": method.family, "width": method.width,
            "fine_tuned": method.finetune, "note": method.note, "results": {}}


def _record_result(row: dict, setting: Setting, result: dict, log) -> None:
    row["results"][setting.name] = result
    row.update(params=result["params"], gene_params=result["gene_params"], fraction=result["fraction"])
    log(f"  {row['method']:16s} {row['arch']:12s} {setting.name:11s} {100 * result['mean']:5.1f} "
        f"± {100 * result['ci95']:4.1f}  ({result['seconds']:.1f}s)")


def _episode_bar(progress, method: Method, setting: Setting):
    """A progress bar over ``setting``'s episodes for ``method``, made by the run's bar factory ``progress``."""
    def bar(items):
        return progress(items, total=len(setting.episodes), desc=f"{method.name} [{method.arch}] {setting.name}")
    return bar


def evaluate_transfer(methods: list[Method], bench: Bench, settings: list[Setting], log=print, progress=None,
                      map_function=None, context_key: str | None = None) -> list[dict]:
    """Every method on every setting (the same episodes for all); one row dict per method.

    With ``map_function`` (SCOOP's map), every (method, setting, episode) is one job spread over
    the workers, which rebuild the methods from the context shared under ``context_key`` (see
    :func:`share_transfer_context`); the rows are the same as in this process alone.
    """
    if map_function is not None:
        return _evaluate_transfer_jobs(methods, settings, log, progress, map_function, context_key)
    rows = []
    for method in methods:
        row = _new_row(method)
        for setting in settings:
            bar = None if progress is None else _episode_bar(progress, method, setting)
            _record_result(row, setting, evaluate_method(method, bench, setting, bar), log)
        rows.append(row)
    add_paired_differences(rows)
    return rows


def new_context_key() -> str:
    """A fresh key for :func:`share_transfer_context`, unique to this process and evaluation."""
    return f"learngene_ea_transfer_{os.getpid()}_{next(_CONTEXT_IDS)}"


def share_transfer_context(key: str, cfg: Config, learngene: Learngene, pretrained: Backbone | None,
                           descendants, local: EpisodeContext, slimming: Learngene | None = None) -> None:
    """Make ``key`` resolvable by :func:`evaluate_episode_job` here (``local``) and on SCOOP workers
    (``descendants``: as :func:`~.baselines.baseline_methods` takes them, with or without their own
    pre-trained networks; ``slimming``: the ``slimming`` row's learngene, if the table has that row)."""
    _CONTEXTS[key] = local
    if spreads(cfg.runtime):
        state = None if pretrained is None else cpu_state(pretrained)
        own = descendants if isinstance(descendants, dict) else dict.fromkeys(descendants)
        descendants = [(list(arch), None if network is None else cpu_state(network)) for arch, network in own.items()]
        share_constant(cfg.runtime, key, {"config": cfg, "learngene": learngene, "pretrained": state,
                             "descendants": descendants, "slimming": slimming})


def forget_transfer_context(key: str | None) -> None:
    """Free what this process keeps under ``key`` (the evaluation is over); nothing if it keeps nothing."""
    _CONTEXTS.pop(key, None)
    if key is not None:
        forget_constant(key)


def _context(key: str) -> EpisodeContext:
    if key not in _CONTEXTS:
        shared_context = shared_constant(key)
        cfg, learngene = shared_context["config"], shared_context["learngene"]
        configure_process(cfg.runtime, cfg.model)
        device = worker_device(cfg.runtime.device)
        dataset = load_target(cfg, learngene.in_channels)
        pretrained = None
        if shared_context["pretrained"] is not None:
            pretrained = pretrained_from_state(shared_context["pretrained"], learngene.family, learngene.width,
                                               learngene.in_channels, device).eval()
        descendants = {tuple(arch): None if state is None else
                       pretrained_from_state(state, arch[0], arch[1], learngene.in_channels, device).eval()
                       for arch, state in shared_context["descendants"]}
        methods = baseline_methods(learngene, pretrained, descendants, cfg.transfer.complement_scale,
                                   shared_context.get("slimming"), cfg.transfer.fresh_channels)
        _CONTEXTS.clear()  # one transfer evaluation at a time: free the previous one
        bench = Bench(dataset, cfg.transfer, learngene.in_channels, device, cfg.fitness.metric)
        _CONTEXTS[key] = EpisodeContext(make_settings(cfg.transfer, dataset), methods, bench)
    return _CONTEXTS[key]


def evaluate_episode_job(job: tuple) -> dict:
    """``(context key, method index, setting index, episode index)`` -> :func:`evaluate_episode`'s record."""
    key, m, s, e = job
    context = _context(key)
    return evaluate_episode(context.methods[m], context.bench, context.settings[s], e)


def _evaluate_transfer_jobs(methods, settings, log, progress, map_function, key) -> list[dict]:
    jobs = [(key, m, s, e) for m in range(len(methods)) for s, setting in enumerate(settings)
            for e in range(len(setting.episodes))]
    results = map_function(evaluate_episode_job, jobs)
    if progress is not None:
        results = progress(results, total=len(jobs), desc="transfer episodes")
    records = dict(zip((job[1:] for job in jobs), results))  # (method, setting, episode) -> record
    rows = []
    for m, method in enumerate(methods):
        row = _new_row(method)
        for s, setting in enumerate(settings):
            _record_result(row, setting, summarise_episodes([records[m, s, e] for e in range(len(setting.episodes))]),
                           log)
        rows.append(row)
    add_paired_differences(rows)
    return rows
