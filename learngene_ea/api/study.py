"""Several evolution seeds of one recipe, each an independent replicate, pooled results.

:func:`run_study` (``python -m learngene_ea.study --config RECIPE --seeds 0 1 2 --out DIR`` wraps it):
for each seed N, ``DIR/seed-N/`` is the run folder that :func:`learngene_ea.api.run.evolve_run`
writes for the config with ``seed=N`` and ``transfer.seed`` mixed with N
(:func:`seed_transfer_seed`). So every seed's transfer table (its learngene and every baseline,
the pre-trained network included) is evaluated on test episodes of its own, and the (seed,
episode) pairs that ``DIR/study.json``, ``study.md`` and ``study.png`` pool are independent
(:mod:`learngene_ea.reports.study`; the run's ``transfer.json`` is reused when it has these
transfer settings). Calling it again after a kill
continues: a finished seed is kept, an unfinished one resumes from its newest checkpoint. Under
``python -m scoop -n 8 -m learngene_ea.study ...`` every evolution and transfer spreads over the
workers as they do alone. Every input is checked before any folder is made.
"""
from __future__ import annotations

import dataclasses
import json
import numbers
import os
import time
from dataclasses import dataclass

from ..config import loading as config_module
from ..config.recipes import read_recipe
from .run import evolve_run, resumed
from ..config.schema import Config
from ..config.schema import MAX_SEED
from ..config.trust import code_names
from ..io.lock import LOCK_FILE
from ..io.paths import file_problem, path_argument
from ..data import load_dataset
from ..errors import UserError
from ..core.learngene import load_learngene
from ..config.checks import check_fitness_fits, check_recipe, check_transfer_fits
from ..fewshot.sampling import mix_seed
from ..reports.study import FORMAT, markdown_table, pool, write_study_reports
from ..core.traced import arch_label
from ..transfer.descendants import parse_descendant
from ..transfer.pipeline import FORMAT as TRANSFER_FORMAT
from ..transfer.pipeline import transfer_after_run
from ..transfer.target import target_data, with_resolved_augment
from ..parallel.engines import process_count
from ..parallel.workers import run_toolbox
from ..core.threads import set_threads
from ..parallel.process import default_threads

STUDY_CONFIG = "study-config.yaml"  # the study's resolved recipe: a rerun must match it
NOT_THE_RECIPE = ("seed", "transfer", "runtime")  # may differ between invocations of one study
_STUDY_TRANSFER = 4  # a tag mixed into a seed's transfer.seed (transfer/episodes.py uses 1-3)


# ---------------------------------------------------------------------- checked input

def seed_transfer_seed(transfer_seed: int, seed: int) -> int:
    """The ``transfer.seed`` of seed ``seed``'s run in a study of recipe ``transfer.seed``.

    Mixed with the evolution seed so that no two seeds share test episodes, fine-tuning seeds or a
    pre-trained baseline: pairs pooled over seeds are then independent, as their interval assumes.
    """
    return mix_seed(transfer_seed, _STUDY_TRANSFER, seed)


def seed_config(cfg: Config, seed: int) -> Config:
    """The config of seed ``seed``'s run: ``cfg`` with ``seed=N`` and its own ``transfer.seed``."""
    overrides = [f"seed={seed}", f"transfer.seed={seed_transfer_seed(cfg.transfer.seed, seed)}"]
    return config_module.from_dict(config_module.apply_overrides(config_module.to_dict(cfg), overrides))


def _flat(values: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in values.items():
        if isinstance(value, dict) and value:
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def recipe_differences(saved: dict, cfg: Config) -> list[str]:
    """Keys (outside seed, transfer and runtime) whose value differs between ``saved`` and ``cfg``."""
    current = _flat(config_module.apply_overrides(config_module.to_dict(cfg), []))
    saved = _flat(saved)
    return [f"{key} is {saved[key]!r} there but {current[key]!r} here" for key in current
            if key.split(".")[0] not in NOT_THE_RECIPE and key in saved and saved[key] != current[key]]


def check_seeds(seeds) -> list[int]:
    """``seeds`` as a list: a non-empty list or tuple of distinct whole numbers from 0 (the API's check; the
    command line's ``--seeds`` are parsed into one). :class:`TypeError` for another type, e.g. ``"012"``."""
    if not isinstance(seeds, (list, tuple)):
        raise TypeError(f"seeds must be a list of whole numbers, e.g. [0, 1, 2], not {type(seeds).__name__} "
                        f"{seeds!r:.80}")
    wrong = [s for s in seeds if isinstance(s, bool) or not isinstance(s, numbers.Integral)]
    if wrong:
        raise TypeError(f"seeds must be whole numbers, e.g. [0, 1, 2]; {wrong[0]!r} is a {type(wrong[0]).__name__}")
    if not seeds:
        raise UserError("no seeds given; pass the evolution seeds, e.g. [0, 1, 2].")
    for i, seed in enumerate(seeds):
        if not 0 <= seed <= MAX_SEED:
            raise UserError(f"seed {seed} is out of range; seeds are whole numbers from 0 to {MAX_SEED}.")
        if seed in seeds[:i]:
            raise UserError(f"seed {seed} is given twice; list every seed once.")
    return [int(seed) for seed in seeds]  # numpy's integers too, as plain ints for study.json


def seed_dir(out: str, seed: int) -> str:
    return os.path.join(out, f"seed-{seed}")


def _has_checkpoint(path: str) -> bool:
    folder = os.path.join(path, "checkpoints")
    return os.path.isdir(folder) and any(n.endswith(".pkl") and not n.startswith(".") for n in os.listdir(folder))


def _leftovers(path: str) -> list[str]:
    """What a run killed before its first checkpoint leaves (its config.yaml, lock file, temporary files)."""
    found = []
    for folder, dirs, files in os.walk(path):
        found += [os.path.join(folder, d) for d in dirs] + [os.path.join(folder, f) for f in files]
    allowed = {os.path.join(path, "config.yaml"), os.path.join(path, "checkpoints"), os.path.join(path, LOCK_FILE)}
    if all(p in allowed or os.path.basename(p).startswith(".") and p.endswith(".tmp") for p in found):
        return found
    return []


def seed_state(path: str) -> str:
    """``finished`` (its summary says so), ``resume`` (a checkpoint, not finished) or ``new``."""
    if os.path.lexists(path) and not os.path.isdir(path):  # else it would fail after the seeds before it
        raise UserError(f"{path!r} is a file where the seed's run folder goes; move it away or pass another --out.")
    summary = os.path.join(path, "summary.json")
    try:
        if os.path.isfile(summary):  # a fifo in its place would block the open for ever
            with open(summary, encoding="utf-8") as f:
                if json.load(f).get("finished") is True:
                    return "finished"
    except (OSError, ValueError, AttributeError):  # ValueError: not JSON, or not UTF-8; AttributeError: not a dict
        pass
    if _has_checkpoint(path):
        return "resume"
    if os.path.isdir(path) and os.listdir(path) and not _leftovers(path):
        raise UserError(f"{path!r} holds files but no run checkpoint; move it away or pass another --out.")
    return "new"


def check_seed_recipe(folder: str, seed: int, cfg: Config) -> None:
    """A seed folder to keep or resume was evolved from this recipe with this seed (its config.yaml)."""
    saved = read_recipe(os.path.join(folder, "config.yaml"))
    problems = ([] if saved.get("seed") == seed else [f"seed is {saved.get('seed')!r} there"])
    problems += recipe_differences(saved, seed_config(cfg, seed))
    if problems:
        raise UserError(f"{folder!r} is a run of another recipe ({'; '.join(problems[:3])}); move it away or pass "
                        "another --out.")


def check_seed_learngene(folder: str) -> None:
    """A finished seed's learngene.pt, which its transfer reads, loads; else which seed folder and how to redo it."""
    path = os.path.join(folder, "learngene.pt")
    try:
        load_learngene(path)
    except UserError as err:
        why = type(err.__cause__).__name__ if err.__cause__ is not None else file_problem(path) or "unreadable"
        raise UserError(f"seed folder {folder!r} is finished but its learngene.pt is damaged ({why}); delete that "
                        "seed folder and rerun the study to evolve the seed again.") from err


def check_out_dir(out: str, cfg: Config) -> None:
    """--out is new, empty, or a study of this recipe (transfer and runtime settings may differ)."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise UserError(f"--out {out!r} is a file; pass a folder for the study.")
    if not os.path.isdir(out) or not os.listdir(out):
        return
    saved_path = os.path.join(out, STUDY_CONFIG)
    if not os.path.isfile(saved_path):
        raise UserError(f"--out {out!r} is not empty and holds no study ({STUDY_CONFIG} is missing); pass a new "
                        "or empty folder, or the folder of a study of this recipe.")
    problems = recipe_differences(read_recipe(saved_path), cfg)
    if problems:
        raise UserError(f"--out {out!r} holds a study of another recipe ({'; '.join(problems[:3])}); pass another "
                        "--out, or the recipe and --set options of that study.")


def check_study(cfg: Config, seeds: list[int], out: str) -> dict[int, str]:
    """Each seed folder's state (new, resume, finished), after every check that needs no compute."""
    check_out_dir(out, cfg)
    states = {seed: seed_state(seed_dir(out, seed)) for seed in seeds}
    for seed, state in states.items():
        if state != "new":
            check_seed_recipe(seed_dir(out, seed), seed, cfg)
        if state == "finished":
            check_seed_learngene(seed_dir(out, seed))
    check_recipe(cfg)
    dataset = load_dataset(cfg.data)
    check_fitness_fits(cfg, dataset)
    target = dataset if cfg.transfer.target is None else load_dataset(cfg.transfer.target, target=True)
    check_transfer_fits(cfg.transfer, target)  # a study always evaluates transfer
    for text in cfg.transfer.descendants:
        parse_descendant(text, cfg.model.width)
    run_toolbox(cfg)  # users' operators are checked before the study folder exists
    return states


# --------------------------------------------------------------------------- per seed

def _json_plain(value):
    return json.loads(json.dumps(value, default=lambda v: v.tolist() if hasattr(v, "tolist") else str(v)))


def transfer_matches(results: dict, cfg: Config, learngene) -> bool:
    """Was ``results`` (a ``transfer.json``) made from this learngene with ``cfg``'s transfer settings?"""
    cfg, _ = with_resolved_augment(cfg)  # transfer.json records the augmentation it used
    evaluation, expected = results.get("evaluation", {}), _json_plain(dataclasses.asdict(cfg.transfer))
    if results.get("format") != TRANSFER_FORMAT or evaluation.get("metric") != cfg.fitness.metric:
        return False
    absent_means = {"complement_scale": 1.0, "fresh_channels": "scaled"}  # settings older transfer.json files lack
    if any(evaluation.get(k, absent_means.get(k)) != v for k, v in expected.items()
           if k not in ("after_run", "descendants")):
        return False
    labels, seen = [], {(learngene.family, float(learngene.width))}
    for text in cfg.transfer.descendants:
        family, width = parse_descendant(text, learngene.width)
        if (family, width) not in seen:
            seen.add((family, width))
            labels.append(arch_label(family, width))
    return (evaluation.get("descendants") == labels
            and results.get("dataset", {}).get("config") == _json_plain(dataclasses.asdict(target_data(cfg)[0]))
            and results.get("learngene", {}).get("meta") == _json_plain(learngene.meta))


def seed_transfer(cfg: Config, folder: str, log) -> tuple[dict, str]:
    """The seed's ``transfer.json``, reused when it matches, else computed as at the end of a run."""
    path = os.path.join(folder, "transfer.json")
    if os.path.isfile(path):
        try:
            with open(path, encoding="utf-8") as f:
                results = json.load(f)
            if transfer_matches(results, cfg, load_learngene(os.path.join(folder, "learngene.pt"))):
                return results, "reused"
        except (OSError, ValueError):
            pass
    return transfer_after_run(cfg, folder, log=log), "computed"


def _read_json(path: str) -> dict:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


# ------------------------------------------------------------------------------- main

@dataclass
class StudyRecipe:
    """Where a study's config came from, as ``study.json`` records it: the recipe file and the overrides."""

    path: str | None = None
    overrides: list[str] = dataclasses.field(default_factory=list)


@dataclass
class StudyResult:
    """What a study wrote into ``out``: ``study`` is exactly what ``study.json`` holds."""

    out: str
    seeds: list[int]
    study: dict
    paths: dict


def evolve_seed(cfg: Config, folder: str, state: str, source: StudyRecipe, quiet: bool, log) -> None:
    """Evolve seed ``cfg.seed`` into ``folder``: a new run, or the resumed one (``state``)."""
    if state == "new" and os.path.isdir(folder):
        for leftover in sorted(_leftovers(folder), reverse=True):  # files before their folder
            if os.path.basename(leftover) != LOCK_FILE:  # a lock file is kept: another process may hold it
                (os.rmdir if os.path.isdir(leftover) else os.remove)(leftover)
    if state == "resume":
        # as ``--resume`` would: the recipe (else the run's own config.yaml) with the overrides
        overrides = [*source.overrides, f"seed={cfg.seed}", f"transfer.seed={cfg.transfer.seed}"]
        # the study's own config (the user's) says which code the seed's checkpoint may import
        start = resumed(folder, overrides, source.path, log=log, trust=code_names(config_module.to_dict(cfg)).values())
        evolve_run(start.config, start.run_dir, state=start.state, recipe=start.recipe, log=log, quiet=quiet)
    else:
        evolve_run(cfg, folder, recipe=config_module.recipe_name(cfg.name, source.path), log=log, quiet=quiet)


def _seed_runs(cfg: Config, seeds: list[int], out: str, states: dict, source: StudyRecipe, quiet: bool, log):
    """Every seed evolved (or resumed, or kept) and its transfer: (transfers, summaries, actions)."""
    threads = cfg.runtime.threads if cfg.runtime.threads > 0 else default_threads()
    transfers, summaries, actions = [], [], []
    for i, seed in enumerate(seeds):
        folder, state, seed_started = seed_dir(out, seed), states[seed], time.perf_counter()
        head = f"seed {i + 1}/{len(seeds)} (seed={seed})"
        cfg_seed = seed_config(cfg, seed)
        if state == "finished":
            log(f"{head}: done, reusing {folder}")
        else:
            log(f"{head}: " + ("resuming " if state == "resume" else "evolving into ") + folder)
            # what the run's first evaluation sets in this process; a previous seed's transfer changed it
            set_threads(threads)
            evolve_seed(cfg_seed, folder, state, source, quiet, log)
        results, transfer = seed_transfer(cfg_seed, folder, log)
        log(f"{head}: transfer {'reused from' if transfer == 'reused' else 'written to'} "
            f"{os.path.join(folder, 'transfer.json')}")
        transfers.append(results)
        summaries.append(_read_json(os.path.join(folder, "summary.json")))
        actions.append({"seed": seed, "evolution": {"finished": "reused", "resume": "resumed"}.get(state, "new"),
                        "transfer": transfer, "seconds": time.perf_counter() - seed_started})
    return transfers, summaries, actions


def run_study(cfg: Config, seeds: list[int], out: str, *, source: StudyRecipe | None = None, log=print,
          quiet: bool = True) -> StudyResult:
    """Evolve (or resume, or keep) every seed of ``cfg`` in ``out/seed-N``, evaluate each learngene's
    transfer on test episodes of its own, pool them and write ``out/study.json``, ``.md``, ``.png``.

    ``source``: the recipe file and overrides ``cfg`` came from (recorded in ``study.json``; a
    resumed seed re-reads them as ``--resume`` would). ``quiet=False``: progress bars.
    """
    started = time.perf_counter()
    source = source or StudyRecipe()
    cfg, seeds, out = config_module.checked_config(cfg), check_seeds(seeds), path_argument(out, "out")
    states = check_study(cfg, seeds, out)
    processes = process_count(cfg.runtime)  # starts Ray when it is the backend: a bad setting stops here
    try:  # the study folder, after every check
        os.makedirs(out, exist_ok=True)
    except OSError as err:
        raise UserError(f"cannot create the study folder {out!r} ({err.strerror}); pass a writable --out.") from err
    config_module.save_config(cfg, os.path.join(out, STUDY_CONFIG))
    threads = cfg.runtime.threads if cfg.runtime.threads > 0 else default_threads()
    log(f"study: {len(seeds)} seeds of {source.path or 'the built-in defaults'} in {out} | {processes} "
        f"process(es), {threads} torch thread(s) each")
    transfers, summaries, actions = _seed_runs(cfg, seeds, out, states, source, quiet, log)
    pooled = pool(seeds, transfers, summaries)
    recipe = {k: v for k, v in config_module.to_dict(cfg).items() if k != "seed"}
    record = {"format": FORMAT, "seeds": seeds, "settings": pooled.pop("settings"),
              "launch": {"processes": processes, "threads": threads},
              "recipe": {"path": source.path, "overrides": list(source.overrides), "config": recipe},
              "dataset": cfg.data.name, "dataset_label": config_module.dataset_label(cfg.data),
              "transfer": dataclasses.asdict(cfg.transfer), **pooled,
              "last_invocation": {"seconds": time.perf_counter() - started, "seeds": actions}}
    paths = write_study_reports(record, out)
    log(markdown_table(record))
    log(f"study reports: {paths['md']}, {paths['json']}, {paths['png']}")
    return StudyResult(out, list(seeds), record, paths)
