"""Several evolution seeds of one recipe, every learngene on the same test episodes, pooled results.

``python -m learngene_ea.study --config RECIPE --seeds 0 1 2 --out DIR [--set section.key=value ...]``

For each seed N, ``DIR/seed-N/`` is the run folder that ``python -m learngene_ea.run --config
RECIPE --set seed=N --run-dir DIR/seed-N`` writes (this module calls that command's own
functions). Every seed's learngene is then evaluated on the same test episodes (the recipe's
``transfer.seed``; reusing the run's ``transfer.json`` when it has these transfer settings),
and ``DIR/study.json``, ``study.md`` and ``study.png`` pool the tables over every (seed,
episode) pair (:mod:`learngene_ea.reports.study`). Rerunning the command after a kill continues:
a finished seed is kept, an unfinished one resumes from its newest checkpoint. Under
``python -m scoop -n 8 -m learngene_ea.study ...`` every evolution and transfer spreads over the
workers as they do alone. Mistakes in the input end with one sentence on stderr and exit code 2
before any folder is made.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time

from ..config import loading as config_module
from . import run as run_module
from ..io.atomic import atomic_write_bytes
from ..config.loading import Config, ConfigError
from ..config.schema import MAX_SEED
from ..data import load_dataset
from ..errors import UserError
from ..ea.evolve import EvaluationFailure, OperatorFailure, build_toolbox
from ..core.learngene import load_learngene
from ..config.checks import check_fitness_fits, check_recipe, check_transfer_fits
from ..reports.study import FORMAT, episode_digests, markdown_table, pool, write_study_reports
from ..transfer.descendants import arch_label, parse_descendant
from ..transfer.pipeline import FORMAT as TRANSFER_FORMAT
from ..transfer.pipeline import transfer_after_run
from ..transfer.cache import is_cache_file
from ..transfer.target import target_data, with_resolved_augment
from ..parallel.engines import process_count
from ..parallel.process import default_threads, set_threads

STUDY_CONFIG = "study-config.yaml"  # the study's resolved recipe: a rerun must match it
NOT_THE_RECIPE = ("seed", "transfer", "runtime")  # may differ between invocations of one study


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m learngene_ea.study",
        description="Evolve one recipe with several seeds, evaluate every learngene on the same test "
                    "episodes and pool the results (run under SCOOP to spread the work: python -m scoop -n 8 "
                    "-m learngene_ea.study ...).")
    parser.add_argument("--config", help="recipe YAML (default: genomes/default.yaml when it exists, "
                                         "else the built-in defaults)")
    parser.add_argument("--seeds", nargs="*", default=None, metavar="N", help="evolution seeds, e.g. --seeds 0 1 2")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override a recipe key for every seed (repeatable), e.g. --set ea.generations=10")
    parser.add_argument("--out", help="study folder: DIR/seed-N/ per seed, DIR/study.json/.md/.png")
    parser.add_argument("--quiet", action="store_true", help="no progress bars, log lines only")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for input errors")
    return parser.parse_args(argv)


# ---------------------------------------------------------------------- checked input

def parse_seeds(values) -> list[int]:
    """The ``--seeds`` values as distinct whole numbers >= 0, in the given order."""
    if not values:
        raise UserError("no seeds given; pass the evolution seeds, e.g. --seeds 0 1 2.")
    seeds = []
    for text in values:
        try:
            seed = int(text)
        except ValueError:
            raise UserError(f"--seeds takes whole numbers, not {text!r}; e.g. --seeds 0 1 2.") from None
        if seed < 0:
            raise UserError(f"seed {seed} is negative; seeds are whole numbers >= 0, e.g. --seeds 0 1 2.")
        if seed > MAX_SEED:
            raise UserError(f"seed {seed} in --seeds is too large; seeds are whole numbers from 0 to {MAX_SEED}.")
        if seed in seeds:
            raise UserError(f"seed {seed} is given twice in --seeds; list every seed once.")
        seeds.append(seed)
    return seeds


def recipe_path(args) -> str | None:
    """--config, else genomes/default.yaml when it exists, else None (the built-in defaults)."""
    if args.config is None and os.path.isfile(config_module.DEFAULT_RECIPE):
        return config_module.DEFAULT_RECIPE
    return args.config


def seed_config(path: str | None, overrides: list[str], seed: int) -> Config:
    """The config of seed ``seed``'s run: the recipe, the overrides, then ``seed=N``."""
    return config_module.load_config(path, [*overrides, f"seed={seed}"])


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


def seed_dir(out: str, seed: int) -> str:
    return os.path.join(out, f"seed-{seed}")


def _has_checkpoint(path: str) -> bool:
    folder = os.path.join(path, "checkpoints")
    return os.path.isdir(folder) and any(n.endswith(".pkl") and not n.startswith(".") for n in os.listdir(folder))


def _leftovers(path: str) -> list[str]:
    """What a run killed before its first checkpoint leaves (its config.yaml, temporary files)."""
    found = []
    for folder, dirs, files in os.walk(path):
        found += [os.path.join(folder, d) for d in dirs] + [os.path.join(folder, f) for f in files]
    allowed = {os.path.join(path, "config.yaml"), os.path.join(path, "checkpoints")}
    if all(p in allowed or os.path.basename(p).startswith(".") and p.endswith(".tmp") for p in found):
        return found
    return []


def seed_state(path: str) -> str:
    """``finished`` (its summary says so), ``resume`` (a checkpoint, not finished) or ``new``."""
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


def check_seed_recipe(folder: str, seed: int, path: str | None, overrides: list[str]) -> None:
    """A seed folder to keep or resume was evolved from this recipe with this seed (its config.yaml)."""
    saved = config_module.read_recipe(os.path.join(folder, "config.yaml"))
    problems = ([] if saved.get("seed") == seed else [f"seed is {saved.get('seed')!r} there"])
    problems += recipe_differences(saved, seed_config(path, overrides, seed))
    if problems:
        raise UserError(f"{folder!r} is a run of another recipe ({'; '.join(problems[:3])}); move it away or pass "
                        "another --out.")


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
    problems = recipe_differences(config_module.read_recipe(saved_path), cfg)
    if problems:
        raise UserError(f"--out {out!r} holds a study of another recipe ({'; '.join(problems[:3])}); pass another "
                        "--out, or the recipe and --set options of that study.")


def prepare(args) -> tuple[list[int], str | None, Config, dict[int, str]]:
    """Seeds, recipe path, resolved config and each seed folder's state: every check before any compute."""
    seeds = parse_seeds(args.seeds)
    if not args.out:
        raise UserError("no study folder given; pass --out DIR (rerun with the same DIR to continue a study).")
    for text in args.overrides:
        if config_module.parse_override(text)[0] == ["seed"]:
            raise UserError(f"--set {text!r} would give every seed the same seed; pass the seeds with --seeds.")
    path = recipe_path(args)
    cfg = config_module.load_config(path, args.overrides)
    check_out_dir(args.out, cfg)
    states = {seed: seed_state(seed_dir(args.out, seed)) for seed in seeds}
    for seed, state in states.items():
        if state != "new":
            check_seed_recipe(seed_dir(args.out, seed), seed, path, args.overrides)
    check_recipe(cfg)
    dataset = load_dataset(cfg.data)
    check_fitness_fits(cfg, dataset)
    target = dataset if cfg.transfer.target is None else load_dataset(cfg.transfer.target, target=True)
    check_transfer_fits(cfg.transfer, target)  # a study always evaluates transfer
    for text in cfg.transfer.descendants:
        parse_descendant(text, cfg.model.width)
    build_toolbox(cfg)  # users' operators are checked before the study folder exists
    return seeds, path, cfg, states


# --------------------------------------------------------------------------- per seed

def run_argv(path: str | None, overrides: list[str], seed: int, folder: str, resume: bool, quiet: bool) -> list[str]:
    """The ``python -m learngene_ea.run`` arguments of one seed's evolution."""
    argv = ["--config", path] if path else []
    for text in [*overrides, f"seed={seed}"]:
        argv += ["--set", text]
    argv += ["--resume", folder] if resume else ["--run-dir", folder]
    return argv + (["--quiet"] if quiet else [])


def _json_plain(value):
    return json.loads(json.dumps(value, default=lambda v: v.tolist() if hasattr(v, "tolist") else str(v)))


def transfer_matches(results: dict, cfg: Config, learngene) -> bool:
    """Was ``results`` (a ``transfer.json``) made from this learngene with ``cfg``'s transfer settings?"""
    cfg, _ = with_resolved_augment(cfg)  # transfer.json records the augmentation it used
    evaluation, expected = results.get("evaluation", {}), _json_plain(dataclasses.asdict(cfg.transfer))
    if results.get("format") != TRANSFER_FORMAT or evaluation.get("metric") != cfg.fitness.metric:
        return False
    if any(evaluation.get(k) != v for k, v in expected.items() if k not in ("after_run", "descendants")):
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


def share_pretrained(folder: str, others: list[str], log) -> None:
    """Offer the other seeds' cached pre-trained networks to ``folder`` (each key's file, when it has none).

    Every seed's baselines train the same network when their evolutions used as many images
    (equal compute) under the same recipe. A cached file is named by its key, so a seed uses a
    copy only when its own key is that one, and never loses a file of its own.
    """
    for other in others:
        if not os.path.isdir(other):
            continue
        for name in sorted(os.listdir(other)):
            # keyed files: a copy under the same name is the same key's network, so none is replaced
            source, target = os.path.join(other, name), os.path.join(folder, name)
            if is_cache_file(name) and not os.path.exists(target):
                with open(source, "rb") as f:
                    atomic_write_bytes(target, f.read())
                log(f"pre-trained baseline: offered {source} to {folder} (used only if its key matches)")


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

def run_study(args, log=print) -> dict:
    """Evolve (or resume, or keep) every seed, evaluate its transfer, pool and write the reports."""
    started = time.perf_counter()
    seeds, path, cfg, states = prepare(args)
    processes = process_count(cfg.runtime)  # starts Ray when it is the backend: a bad setting stops here
    try:  # the study folder, after every check
        os.makedirs(args.out, exist_ok=True)
    except OSError as err:
        raise UserError(f"cannot create the study folder {args.out!r} ({err.strerror}); pass a writable --out.") from err
    config_module.save_config(cfg, os.path.join(args.out, STUDY_CONFIG))
    threads = cfg.runtime.threads if cfg.runtime.threads > 0 else default_threads()
    log(f"study: {len(seeds)} seeds of {path or 'the built-in defaults'} in {args.out} | {processes} "
        f"process(es), {threads} torch thread(s) each")
    transfers, summaries, actions = [], [], []
    for i, seed in enumerate(seeds):
        folder, state, seed_started = seed_dir(args.out, seed), states[seed], time.perf_counter()
        head = f"seed {i + 1}/{len(seeds)} (seed={seed})"
        if state == "finished":
            log(f"{head}: done, reusing {folder}")
        else:
            if state == "new" and os.path.isdir(folder):
                for leftover in sorted(_leftovers(folder), reverse=True):  # files before their folder
                    (os.rmdir if os.path.isdir(leftover) else os.remove)(leftover)
            log(f"{head}: " + ("resuming " if state == "resume" else "evolving into ") + folder)
            # what the run's first evaluation sets in this process; a previous seed's transfer changed it
            set_threads(threads)
            run_module.run(run_module.parse_args(run_argv(path, args.overrides, seed, folder, state == "resume",
                                                          args.quiet)))
        cfg_seed = seed_config(path, args.overrides, seed)
        share_pretrained(folder, [seed_dir(args.out, s) for s in seeds if s != seed], log)
        results, transfer = seed_transfer(cfg_seed, folder, log)
        log(f"{head}: transfer {'reused from' if transfer == 'reused' else 'written to'} "
            f"{os.path.join(folder, 'transfer.json')}")
        transfers.append(results)
        summaries.append(_read_json(os.path.join(folder, "summary.json")))
        actions.append({"seed": seed, "evolution": {"finished": "reused", "resume": "resumed"}.get(state, "new"),
                        "transfer": transfer, "seconds": time.perf_counter() - seed_started})
    reference = episode_digests(transfers[0])
    for seed, results in zip(seeds, transfers):
        if episode_digests(results) != reference:
            raise UserError(f"seed-{seed}/transfer.json was evaluated on other test episodes than seed-{seeds[0]}'s; "
                            f"delete it and rerun the study to evaluate it again.")
    pooled = pool(seeds, transfers, summaries)
    recipe = {k: v for k, v in config_module.to_dict(cfg).items() if k != "seed"}
    study = {"format": FORMAT, "seeds": seeds, "settings": pooled.pop("settings"),
             "launch": {"processes": processes, "threads": threads},
             "recipe": {"path": path, "overrides": list(args.overrides), "config": recipe},
             "dataset": cfg.data.name, "dataset_label": config_module.dataset_label(cfg.data),
             "transfer": dataclasses.asdict(cfg.transfer), **pooled,
             "last_invocation": {"seconds": time.perf_counter() - started, "seeds": actions}}
    paths = write_study_reports(study, args.out)
    log(markdown_table(study))
    log(f"study reports: {paths['md']}, {paths['json']}, {paths['png']}")
    return study


def main(argv=None) -> int:
    """Run the command line; return the exit status (0; 1 for a failed evolution; 2 for bad input; 130)."""
    argv = sys.argv[1:] if argv is None else argv
    debug = "--debug" in argv
    try:
        run_study(parse_args(argv))
        return 0
    except (UserError, ConfigError) as err:
        if debug:
            raise
        print(f"error: {err}", file=sys.stderr)
        return 2
    except (EvaluationFailure, OperatorFailure) as err:
        return run_module.report_failure(err, debug, " Rerunning the study command resumes that seed.")
    except KeyboardInterrupt:
        print("interrupted: finished generations are in each seed's checkpoints/; rerun the same study command "
              "to continue.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    status = main()
    if status:  # a plain sys.exit(0) shows up as a "SystemExit: 0" traceback under SCOOP's file launch
        sys.exit(status)
