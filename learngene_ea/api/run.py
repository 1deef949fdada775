"""One GTL run from Python: :func:`evolve_run` (a new run), :func:`resume_run`; what they return, :class:`RunResult`.

A run builds the toolbox, runs :func:`learngene_ea.ea.evolve.evolve`, and after every generation
writes the run directory (:class:`RunOutputs`): ``config.yaml``, ``logbook.jsonl``,
``checkpoints/gen_NNNN.pkl`` + ``latest.pkl``, ``learngene.pt``, ``evolution.png``, ``summary.json``,
the Pareto front and the lineage; at the end the product is rescored on fresh validation episodes
and, with ``transfer.after_run``, evaluated on the test classes. ``python -m learngene_ea.run`` is a
thin command line over these functions (:mod:`learngene_ea.cli.run`).
"""
from __future__ import annotations

import contextlib
import datetime
import os
import time
from dataclasses import dataclass

from ..config.checks import check_run_fits, silent_caps
from ..config.loading import (apply_overrides, checked_config, dataset_label, from_dict, override_list, parse_override,
                              recipe_name, save_config)
from ..config.recipes import read_recipe
from ..config.schema import Config, DataConfig, RuntimeConfig
from ..config.trust import admit_code, trust_code, user_code
from ..data import load_dataset
from ..ea import gene_pool
from ..ea.evolve import EvolutionState, evolve, new_state
from ..ea.product import product_learngene
from ..ea.fitness import rescore
from ..ea.state import (RESUME_NOTE, checkpoint_payload, compatibility_problems, network_problems, read_checkpoint,
                        resume_problems, state_from_checkpoint)
from ..errors import RunInterrupted, UserError, WriteError, refused_by_system
from ..core.traced import arch_label, network_notes
from ..io.atomic import remove_temporaries
from ..io.checkpoint import (START, CheckpointError, checkpoint_files, has_checkpoint, prune_generation_files,
                              save_checkpoint)
from ..io.lock import LOCK_FILE, run_folder_lock
from ..io.paths import path_argument
from ..parallel.engines import start_engine
from ..parallel.workers import EngineWorkers, run_toolbox
from ..reports.files import plot_evolution, write_json, write_logbook
from ..reports.progress import tqdm_bars
from ..reports.lineage import write_lineage
from ..reports.pareto import write_front
from ..reports.pool import write_pool_report
from ..reports.tensorboard_log import TensorBoardLog, require_tensorboard
from ..transfer.pretrain import given_pretrained


@dataclass
class RunResult:
    """What a finished run wrote: its folder, config and recipe name, the product, ``summary.json``'s record.

    ``summary`` is exactly what ``summary.json`` holds (``summary["best"]``: the product's figures,
    ``["fresh_validation"]`` once rescored); ``transfer`` what ``transfer.json`` holds (``None``
    without ``transfer.after_run``); ``state`` the final evolution state (population, hall of fame,
    logbook).
    """

    run_dir: str
    config: Config
    recipe: str
    summary: dict
    state: EvolutionState
    transfer: dict | None = None

    @property
    def learngene_path(self) -> str:
        """The product, ``<run_dir>/learngene.pt``."""
        return os.path.join(self.run_dir, "learngene.pt")


def run_title(data: DataConfig, recipe: str) -> str:
    """``default on synthetic``: the recipe and the dataset (its ``data`` section), as plots and summaries name
    a run."""
    return f"{recipe} on {dataset_label(data)}"


def new_run_dir(cfg: Config, requested: str | None, recipe: str | None = None) -> str:
    """A fresh run directory's path (made later); an existing run is never reused or overwritten.

    Unless ``requested`` says where: ``runs/<name>-<timestamp>`` when the recipe sets ``name``, else
    ``runs/<recipe>-<dataset>-<timestamp>`` (``recipe``: the recipe file's name).
    """
    if requested:
        if os.path.isdir(requested) and set(os.listdir(requested)) - {LOCK_FILE}:  # the lock file tells nothing
            raise UserError(f"run directory {requested!r} already exists and is not empty; resume it with "
                            f"--resume {requested} or pass another --run-dir.")
        return requested
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    prefix = cfg.name or f"{recipe or 'defaults'}-{dataset_label(cfg.data)}"
    path = os.path.join("runs", f"{prefix}-{stamp}")
    suffix = 1
    while os.path.exists(path):
        suffix += 1
        path = os.path.join("runs", f"{prefix}-{stamp}-{suffix}")
    return path


def make_run_dir(path: str) -> None:
    """Create the run directory and its checkpoints folder (once every input has been checked)."""
    try:
        os.makedirs(os.path.join(path, "checkpoints"), exist_ok=True)
    except OSError as err:
        if refused_by_system(err):
            raise WriteError(path, err) from err
        raise UserError(f"cannot create run directory {path!r} ({err.strerror}); pass a writable --run-dir.") from err


def keep_layout(saved: dict, runtime: RuntimeConfig, overrides: list[str], log) -> None:
    """A resumed run keeps the memory layout it was run in, unless an override says otherwise (``runtime``:
    the resumed recipe's section, changed in place).

    Float sums differ between layouts, so only the recorded one continues bit for bit (a
    recipe whose default changed since, e.g. genomes/default.yaml, must not switch it).
    """
    recorded = bool(saved.get("runtime", {}).get("channels_last", False))
    if runtime.channels_last != recorded and not any(
            parse_override(text)[0] == ["runtime", "channels_last"] for text in overrides):
        runtime.channels_last = recorded
        log(f"resuming in the layout the run was started with (runtime.channels_last={str(recorded).lower()})")


@dataclass
class Resumed:
    """A checkpoint made ready to continue: its config (overrides applied), state, run folder and recipe name."""

    config: Config
    state: EvolutionState
    run_dir: str
    recipe: str


def resumed(path: str, overrides: list[str] = (), recipe_path: str | None = None, run_dir: str | None = None,
            log=print, trust=()) -> Resumed:
    """Read the newest valid checkpoint of run folder ``path`` (or the ``.pkl`` file ``path``) to continue it.

    The checkpoint's own config, or the recipe at ``recipe_path``, with ``overrides`` applied; a
    change that a population cannot survive (model, dataset, split) is refused. Code the
    checkpoint's config names is imported only when ``recipe_path``, ``overrides`` or ``trust``
    (``--trust-module`` names) name it too (:mod:`learngene_ea.config.trust`). ``run_dir``: where
    to go on writing (default: the checkpoint's run folder).
    """
    path, overrides = path_argument(path, "the run folder or checkpoint to resume"), override_list(overrides)
    fresh = os.path.isdir(path) and not has_checkpoint(path) and os.path.isfile(os.path.join(path, "config.yaml"))
    if fresh:  # killed before its first checkpoint: the recorded config starts again
        source = os.path.join(path, "config.yaml")
        payload = {"config": read_recipe(source), "generation": -1}
    else:
        payload, source = read_checkpoint(path, log)
    saved = payload["config"]
    own = read_recipe(recipe_path) if recipe_path else None  # the user's recipe: what it names is trusted
    values = apply_overrides(own if recipe_path else saved, overrides)
    admit_code(values, user_code(own, overrides, trust), f"checkpoint {source!r}")  # before any import
    trust_code(trust)
    cfg = from_dict(values)
    problems = compatibility_problems(saved, cfg) + network_problems(payload, cfg.model, cfg.data.channels)
    if problems:
        raise CheckpointError(f"cannot resume {source!r}: " + "; ".join(problems) + ".")
    problems = [] if fresh else resume_problems(saved, cfg)  # a fresh start may change anything
    if problems:
        raise CheckpointError(f"cannot resume {source!r}: " + "; ".join(problems) + f" ({RESUME_NOTE}).")
    recipe = cfg.name or payload.get("recipe") or recipe_name(cfg.name, recipe_path)
    keep_layout(saved, cfg.runtime, overrides, log)
    check_run_fits(cfg, load_dataset(cfg.data))
    run_dir = run_dir or (path if os.path.isdir(path) else os.path.dirname(os.path.dirname(os.path.abspath(source))))
    if fresh:
        log(f"no checkpoint in {path}: starting it again from {source}")
        return Resumed(cfg, new_state(cfg), run_dir, recipe)
    log(f"resuming {source} after generation {payload['generation']}")
    return Resumed(cfg, state_from_checkpoint(payload), run_dir, recipe)


class RunOutputs:
    """Writes every output file after each generation (checkpoint first: it is what resumes)."""

    def __init__(self, run_dir: str, cfg: Config, recipe: str, log=print, caps=()):
        self.run_dir = run_dir
        self.cfg = cfg
        self.recipe = recipe  # the run's name (the recipe file's, or the recipe's ``name``)
        self.log = log
        self.caps = list(caps)  # the warnings of recipe values the run lowers (config.checks.silent_caps)
        self.title = run_title(cfg.data, recipe)
        self.started = time.perf_counter()
        self.checkpoint_bytes = 0
        self.checkpoint_seconds = 0.0
        self.final_summary: dict = {}
        self.product = None  # the individual whose learngene learngene.pt holds (after a generation)
        save_config(cfg, self.path("config.yaml"))

    def path(self, *parts) -> str:
        return os.path.join(self.run_dir, *parts)

    def start(self, state: EvolutionState) -> None:
        """``checkpoints/start.pkl``: the state before generation 0 (a gene pool's warm start done), so
        that a kill before generation 0 ends leaves a run that ``--resume`` continues."""
        save_checkpoint(checkpoint_payload(state, self.cfg, self.recipe), self.path("checkpoints", START))

    def __call__(self, state: EvolutionState) -> None:
        start = time.perf_counter()
        payload = checkpoint_payload(state, self.cfg, self.recipe)
        self.checkpoint_bytes = save_checkpoint(payload, self.path("checkpoints", f"gen_{state.generation:04d}.pkl"))
        save_checkpoint(payload, self.path("checkpoints", "latest.pkl"))
        prune_generation_files(self.run_dir, state.generation, self.cfg.runtime.keep_checkpoints)  # both written
        self.checkpoint_seconds = time.perf_counter() - start
        write_logbook(state.logbook, self.path("logbook.jsonl"))
        learngene, individual, reached = product_learngene(state, self.cfg)
        self.product = individual
        learngene.meta["recipe"] = self.recipe
        learngene.save(self.path("learngene.pt"))
        plot_evolution(state.logbook, self.path("evolution.png"), f"GTL: {self.title}")
        write_front(state, self.cfg, self.run_dir, f"Pareto front: {self.title} ({self.cfg.ea.selection})")
        write_lineage(state.lineage, individual.id, self.run_dir, f"Lineage of #{individual.id}: {self.title}")
        if state.pool is not None:
            write_pool_report(state.pool, self.run_dir, f"Learngene scores of the gene pool: {self.title}")
        write_json(self.summary(state, learngene, individual, reached), self.path("summary.json"))

    def finish(self, state: EvolutionState, fresh: dict | None) -> None:
        """The evolution is over: learngene.pt and summary.json with the product's score on fresh
        validation episodes (``None``: not rescored), and ``"finished": true`` in the summary,
        which tells a study never to run this seed again."""
        learngene, individual, reached = product_learngene(state, self.cfg)
        if fresh is not None:
            learngene.meta["fresh_validation"] = fresh
        learngene.meta["recipe"] = self.recipe
        learngene.save(self.path("learngene.pt"))
        summary = self.summary(state, learngene, individual, reached)
        if fresh is not None:
            summary["best"]["fresh_validation"] = fresh
        self.final_summary = {**summary, "finished": True}
        write_json(self.final_summary, self.path("summary.json"))

    def summary(self, state, learngene, individual, reached) -> dict:
        generations = len(state.logbook)
        return {
            "run_dir": self.run_dir,
            "title": self.title, "recipe": self.recipe, "dataset": dataset_label(self.cfg.data),
            "caps": self.caps,
            "generations_run": generations,
            "last_generation": state.generation,
            "best": {
                "id": individual.id,
                # the score it was selected on: the best of every evaluation on the run's fixed
                # validation episodes, so biased upward (fresh_validation is not)
                "accuracy": float(individual.fitness.values[0]),
                "ci95": float(individual.evaluation.get("ci95", 0.0)),
                "selected_among_evaluations": sum(record["evals"] for record in state.logbook),
                "fraction": float(learngene.fraction),
                "num_params": int(learngene.num_params),
                "born": individual.born,
                "reached_target": reached,
            },
            "target_fraction": self.cfg.ea.target_fraction,
            "wall_seconds": state.seconds,
            "seconds_per_generation": state.seconds / max(1, generations),
            "checkpoint_bytes": self.checkpoint_bytes,
            "checkpoint_bytes_per_individual": self.checkpoint_bytes / max(1, len(state.population)),
            "failed_evaluations": len(state.errors),
            "numerics": {key: getattr(self.cfg.runtime, key) for key in ("device", "deterministic", "tf32", "precision")},
        }


def given_pool(path: str, cfg) -> gene_pool.GenePool:
    """``--from-pretrained``: the gene pool starts from a user's network (checked as ``--pretrained`` is)."""
    if cfg.fitness.inheritance != "pool":
        raise UserError("--from-pretrained starts the gene pool: set fitness.inheritance=pool (--set).")
    if cfg.task.head_init == "pool":
        raise UserError("--from-pretrained gives the gene pool no head over the training classes for "
                        "task.head_init=pool to inherit: set another task.head_init (--set).")
    model, info = given_pretrained(path, cfg.model.network, cfg.model.width, cfg.data.channels, "cpu",
                                   "--from-pretrained")
    return gene_pool.pool_from_model(model, {"kind": "given", "images": 0, "path": info["path"]})


def _progress_bars(quiet: bool):
    """A tqdm progress bar per generation (and the warm start's steps) on stderr, or ``None`` (``quiet``)."""
    return None if quiet else tqdm_bars("descendant")


def _log_product(state: EvolutionState, cfg: Config, path: str, log) -> None:
    learngene, individual, reached = product_learngene(state, cfg)
    note = "" if reached else f" (target {cfg.ea.target_fraction} not reached: best overall saved)"
    evaluations = sum(record["evals"] for record in state.logbook)
    log(f"learngene: {path} | fraction {learngene.fraction:.3f} "
        f"({learngene.num_params} parameters) | val accuracy {individual.fitness.values[0]:.3f}"
        f"±{individual.evaluation.get('ci95', 0.0):.3f} as selected (best of {evaluations} evaluations on "
        f"the same episodes: biased upward){note}")


def _finish(state: EvolutionState, cfg: Config, outputs: RunOutputs, board, log) -> dict | None:
    """Rescore the product on fresh episodes, write the final files, run the transfer if the recipe asks."""
    _log_product(state, cfg, outputs.path("learngene.pt"), log)
    _, individual, _ = product_learngene(state, cfg)
    fresh = (rescore(individual, cfg, cfg.fitness.rescore_episodes, EngineWorkers()) if cfg.fitness.rescore_episodes
             else None)
    outputs.finish(state, fresh)
    if fresh is not None:
        log(f"learngene rescored: val accuracy {fresh['accuracy']:.3f}±{fresh['ci95']:.3f} on "
            f"{fresh['episodes']} fresh validation episodes, with a fresh descendant (unbiased)")
    results = None
    if cfg.transfer.after_run:
        from ..transfer import transfer_after_run

        results = transfer_after_run(cfg, outputs.run_dir, log=log)
        if board is not None:
            board.transfer(results)
    return results


def resume_note(run_dir: str) -> str:
    """What a run stopped now keeps, and how to continue it (the files say: the truth at any instant)."""
    files = checkpoint_files(run_dir)
    if files:
        return f"the last finished generation is in {files[0]}; continue with --resume {run_dir}"
    if os.path.exists(os.path.join(run_dir, "checkpoints", START)):
        return f"no generation finished; --resume {run_dir} starts generation 0 from checkpoints/{START}"
    return f"no generation finished; --resume {run_dir} starts the run again from its config.yaml"


@contextlib.contextmanager
def interruption_noted(run_dir: str):
    """Ctrl-C in the ``with`` block becomes a :class:`RunInterrupted` saying what the folder keeps."""
    try:
        yield
    except RunInterrupted:
        raise
    except KeyboardInterrupt as err:
        raise RunInterrupted(resume_note(run_dir) + ".") from err


def evolve_run(cfg: Config, run_dir: str | None = None, *, state: EvolutionState | None = None,
               recipe: str | None = None, log=print, quiet: bool = True, callbacks=()) -> RunResult:
    """Evolve a learngene with ``cfg`` and write the run folder; return what was written.

    ``run_dir``: the folder (default ``runs/<recipe>-<dataset>-<timestamp>``; an existing non-empty
    one is refused unless ``state`` continues it). ``state``: where to start (default: a new
    generation 0; :func:`resumed` and :func:`learngene_ea.ea.state.seeded_state` give others).
    ``recipe``: the run's name in titles (default: ``cfg.name`` or ``defaults``). ``quiet=False``
    shows a progress bar per generation. ``callbacks``: functions called as ``callback(record, best)``
    after each generation's files are written, with its logbook record (a dict, as in
    ``logbook.jsonl``) and the individual whose learngene ``learngene.pt`` now holds: the hook for an
    experiment tracker. One that raises stops the run after that generation (``resume_run``
    continues it). Every input is checked before the folder is made.
    """
    callbacks = [callbacks] if callable(callbacks) else list(callbacks)
    if not all(callable(callback) for callback in callbacks):
        raise TypeError("callbacks must be a list of functions callback(record, best)")
    cfg = checked_config(cfg)  # a Config changed after loading is checked again; a path is a TypeError
    run_dir = None if run_dir is None else path_argument(run_dir, "run_dir")
    recipe = recipe or cfg.name or "defaults"
    if state is None:
        check_run_fits(cfg, load_dataset(cfg.data))  # before the run folder exists
        state, run_dir = new_state(cfg), new_run_dir(cfg, run_dir, recipe)
    elif run_dir is None:
        run_dir = new_run_dir(cfg, None, recipe)
    workers = start_engine(cfg.runtime)  # a backend it cannot give (no Ray, no cluster): stop now
    toolbox = run_toolbox(cfg)  # users' operators are checked before the run folder exists
    if cfg.runtime.tensorboard:
        require_tensorboard()
    make_run_dir(run_dir)
    with run_folder_lock(run_dir), interruption_noted(run_dir):  # one writer; Ctrl-C says what is kept
        for path in remove_temporaries(run_dir):
            log(f"removed {path}, left by a killed write")
        board = TensorBoardLog(run_dir) if cfg.runtime.tensorboard else None
        log(f"run directory: {run_dir} | {recipe}: {arch_label(cfg.model.network, cfg.model.width)} on "
            f"{dataset_label(cfg.data)} | population {cfg.ea.population_size}, generations "
            f"{cfg.ea.generations} | {workers}")
        for note in network_notes(cfg.model.network, cfg.data.channels):
            log(f"note: {note}")
        caps = silent_caps(cfg)
        for line in caps:
            log(line)
        outputs = RunOutputs(run_dir, cfg, recipe, log, caps)

        def on_generation(state):
            outputs(state)
            if board is not None:
                board.generation(state.logbook[-1])
            for callback in callbacks:
                callback(dict(state.logbook[-1]), outputs.product)

        state = evolve(cfg, toolbox, state, on_generation=on_generation, on_start=outputs.start,
                       progress=_progress_bars(quiet), log=log)
        transfer = _finish(state, cfg, outputs, board, log)
        if board is not None:
            board.close()
        return RunResult(run_dir, cfg, recipe, outputs.final_summary, state, transfer)


def resume_run(path: str, overrides: list[str] = (), *, recipe_path: str | None = None, run_dir: str | None = None,
               trust=(), **options) -> RunResult:
    """Continue the run in folder ``path`` (or from the checkpoint file ``path``); see :func:`resumed`
    (``trust``: the code its config may import, as ``--trust-module``). ``options``: :func:`evolve_run`'s
    ``log``, ``quiet`` and ``callbacks``."""
    start = resumed(path, overrides, recipe_path, run_dir, options.get("log", print), trust)
    return evolve_run(start.config, start.run_dir, state=start.state, recipe=start.recipe, **options)
