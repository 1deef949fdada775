"""NSGA-II selection, the run's Pareto front and the lineage: operators, files, checkpoints and resume."""
import json
import random

import pytest
import torch

from conftest import stopped_after, tiny_overrides
from learngene_ea.cli import run as run_cli
from learngene_ea.io.checkpoint import load_checkpoint, save_checkpoint
from learngene_ea.ea.evolve import EvolutionState, next_generation, record_generation
from learngene_ea.core.individual import make_individual, same_individual
from learngene_ea.core.learngene import full_masks
from learngene_ea.reports.lineage import ancestry
from learngene_ea.core.models import arch_spec
from learngene_ea.ea.operators import sel_crowded_tournament
from learngene_ea.ea.toolbox import build_toolbox
from deap import tools


def evaluated(acc, fraction, ident):
    spec = arch_spec("conv4", 0.25)
    ind = make_individual(spec, full_masks(spec), ident, born=0)
    ind.fitness.values = (acc, fraction)
    return ind


# ------------------------------------------------------------------------ selection

def test_crowded_tournament_prefers_a_non_dominated_individual():
    better, dominated = evaluated(0.6, 0.3, 0), evaluated(0.5, 0.5, 1)
    random.seed(0)
    chosen = sel_crowded_tournament([better, dominated], 30, tournsize=8)
    assert all(ind is better for ind in chosen)


def test_crowded_tournament_prefers_the_loneliest_on_one_front():
    # one front: the two extremes have infinite crowding distance, the middle a finite one
    front = [evaluated(0.4, 0.2, 0), evaluated(0.5, 0.3, 1), evaluated(0.6, 0.4, 2)]
    random.seed(0)
    chosen = sel_crowded_tournament(front, 30, tournsize=8)
    assert 1 not in [ind.id for ind in chosen] and len(chosen) == 30


def test_nsga2_survival_keeps_the_population_size_and_makes_as_many_offspring_as_parsimony(tiny_cfg):
    tiny_cfg.ea.selection = "nsga2"
    toolbox = build_toolbox(tiny_cfg)
    size, elites = tiny_cfg.ea.population_size, tiny_cfg.ea.elites
    # last parents and offspring: 7 individuals, the first dominated by every other one
    pool = [evaluated(0.1, 0.9, 0)] + [evaluated(0.3 + 0.05 * i, 0.3 + 0.1 * i, i) for i in range(1, 7)]
    state = EvolutionState(population=pool, halloffame=tools.HallOfFame(1, similar=same_individual),
                           logbook=tools.Logbook(), next_id=7)
    random.seed(0)
    new = next_generation(pool, toolbox, tiny_cfg.ea, state, generation=1)
    survivors, offspring = new[:size], new[size:]
    assert 0 not in [ind.id for ind in survivors] and all(ind.fitness.valid for ind in survivors)
    assert len(offspring) == size - elites
    assert all(not ind.fitness.valid and ind.born == 1 and ind.id >= 7 for ind in offspring)
    assert all(ind.parents[0] in {s.id for s in survivors} for ind in offspring)


# ------------------------------------------------------------------------ front + lineage

def test_the_front_keeps_distinct_learngenes_of_equal_fitness_and_drops_failures(tiny_cfg):
    a, twin, copy = evaluated(0.5, 0.3, 0), evaluated(0.5, 0.3, 1), evaluated(0.5, 0.3, 0)
    failed = evaluated(0.0, 0.1, 2)
    failed.evaluation = {"error": {"type": "DivergedError"}}
    state = EvolutionState(population=[a, twin, copy, failed], logbook=tools.Logbook(),
                           halloffame=tools.HallOfFame(2, similar=same_individual))
    record_generation(state, tiny_cfg.ea, 0, state.population, [], 0.0)
    assert sorted(ind.id for ind in state.pareto) == [0, 1]  # a copy of #0 is no second member
    assert state.lineage[2]["failed"] and state.lineage[0]["operator"] == "init"


def test_the_operators_that_made_an_individual_are_noted_in_order():
    from learngene_ea.ea.lineage import mark_operator

    a, b = evaluated(0.5, 0.3, 0), evaluated(0.4, 0.2, 1)
    a.made_by = b.made_by = "copy"
    mark_operator(lambda x, y: (x, y), "crossover")(a, b)
    mark_operator(lambda x: (x,), "mutation")(a)
    assert (a.made_by, b.made_by) == ("crossover+mutation", "crossover")


def test_ancestry_follows_parents_back_to_generation_0():
    lineage = {0: {"id": 0, "parents": [], "born": 0}, 1: {"id": 1, "parents": [0], "born": 1},
               2: {"id": 2, "parents": [9], "born": 1}, 3: {"id": 3, "parents": [1, 2], "born": 2}}
    assert [r["id"] for r in ancestry(lineage, 3)] == [0, 1, 2, 3]  # 9: not recorded (another run)


# ------------------------------------------------------------------------ a whole run

def sets(**extra):
    args = []
    for item in tiny_overrides(**{"ea.selection": "nsga2", "ea.cxpb": 0.5, "ea.generations": 2, **extra}):
        args += ["--set", item]
    return args


@pytest.fixture(scope="module")
def nsga2_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("nsga2") / "run"
    assert run_cli.main([*sets(), "--run-dir", str(run_dir), "--quiet", "--set", "fitness.rescore_episodes=0"]) == 0
    return run_dir


def test_an_nsga2_run_writes_its_front_as_learngene_files(nsga2_run):
    pareto = json.loads((nsga2_run / "pareto.json").read_text())
    assert pareto["selection"] == "nsga2" and pareto["front"] and (nsga2_run / "pareto.png").stat().st_size
    files = sorted(p.name for p in (nsga2_run / "pareto").glob("learngene-*.pt"))
    assert files == sorted(row["file"].split("/")[-1] for row in pareto["front"])
    points = {(r["accuracy"], r["fraction"]) for r in pareto["evaluated"]}
    for row in pareto["front"]:  # nothing evaluated beats a member on both objectives
        assert not any(a >= row["accuracy"] and f <= row["fraction"] and (a, f) != (row["accuracy"], row["fraction"])
                       for a, f in points)
        meta = torch.load(nsga2_run / row["file"], weights_only=True)["meta"]
        assert meta["id"] == row["id"] and abs(meta["fraction"] - row["fraction"]) < 1e-9


def test_lineage_json_holds_the_products_ancestry_with_operators(nsga2_run):
    lineage = json.loads((nsga2_run / "lineage.json").read_text())
    summary = json.loads((nsga2_run / "summary.json").read_text())
    ancestors = lineage["ancestry"]
    assert lineage["product"] == summary["best"]["id"] == ancestors[-1]["id"]
    assert ancestors[0]["born"] == 0 and ancestors[0]["operator"] == "init"
    assert {e["operator"] for e in lineage["edges"]} <= {"mutation", "crossover", "crossover+mutation", "copy"}
    assert len(lineage["individuals"]) == sum(json.loads(line)["evals"]
                                              for line in (nsga2_run / "logbook.jsonl").read_text().splitlines())
    assert (nsga2_run / "lineage.png").stat().st_size


def test_a_resumed_nsga2_run_equals_the_uninterrupted_run(nsga2_run, tmp_path):
    run_dir = tmp_path / "run"
    with stopped_after(1):  # the recipe unchanged (its budget, hence the default's warm start)
        assert run_cli.main([*sets(), "--run-dir", str(run_dir), "--quiet",
                             "--set", "fitness.rescore_episodes=0"]) == 130
    assert run_cli.main(["--resume", str(run_dir), "--quiet"]) == 0
    for name in ("pareto.json", "lineage.json"):
        assert json.loads((run_dir / name).read_text()) == json.loads((nsga2_run / name).read_text())


def test_a_checkpoint_without_front_or_lineage_still_resumes(nsga2_run, tmp_path):
    import shutil

    run_dir = tmp_path / "old"
    shutil.copytree(nsga2_run, run_dir)
    checkpoints = run_dir / "checkpoints"
    for path in checkpoints.glob("gen_000[12].pkl"):
        path.unlink()
    (checkpoints / "latest.pkl").unlink()
    payload = load_checkpoint(checkpoints / "gen_0000.pkl")
    del payload["pareto"], payload["lineage"]  # as written before they were kept
    save_checkpoint(payload, checkpoints / "gen_0000.pkl")
    assert run_cli.main(["--resume", str(run_dir), "--quiet"]) == 0
    resumed = load_checkpoint(checkpoints / "latest.pkl")
    assert len(resumed["pareto"]) and 0 in resumed["lineage"]


def test_the_transfer_command_evaluates_every_learngene_of_a_pareto_folder_in_one_table(nsga2_run, tmp_path,
                                                                                       capsys):
    import shutil

    from learngene_ea.cli.transfer import main as transfer_main

    folder = tmp_path / "pareto"
    shutil.copytree(nsga2_run / "pareto", folder)
    first = sorted(folder.glob("learngene-*.pt"))[0]
    shutil.copy(first, folder / (first.stem + "-again.pt"))  # one more member: the same learngene again
    count = len(list(folder.glob("learngene-*.pt")))
    args = ["--learngene", str(folder), "--config", str(nsga2_run / "config.yaml"), "--quiet"]
    for item in ("transfer.episodes=2", "transfer.shots=[1]", "transfer.limited_data=0", "transfer.steps=2",
                 "transfer.n_query=3", "runtime.threads=1"):
        args += ["--set", item]
    assert transfer_main(args) == 0
    results = json.loads((folder / "front-transfer.json").read_text())
    assert len(results["members"]) == count and (folder / "front-transfer.png").stat().st_size
    assert {"scratch", "pretrained"} <= set(results["shared"])  # evaluated once, not per learngene
    assert all(set(m["rows"]) == {"learngene", "instincts", "random-learngene", "l1-learngene"}
               for m in results["members"])
    again = [m for m in results["members"] if m["file"] == first.stem + "-again.pt"][0]
    original = [m for m in results["members"] if m["file"] == first.name][0]
    same_episodes = again["rows"]["learngene"]["1-shot"]["accuracies"]
    assert same_episodes == original["rows"]["learngene"]["1-shot"]["accuracies"]
    # the pre-trained baseline was trained once, for every learngene, and cached by its key
    assert len(list(folder.glob("pretrained-*.pt"))) == 1 and results["pretrained"]["reused"] is False
    assert capsys.readouterr().out.count("| Fraction |") == 1


def test_a_folder_without_learngenes_is_one_sentence_and_exit_2(tmp_path, capsys):
    from learngene_ea.cli.transfer import main as transfer_main

    assert transfer_main(["--learngene", str(tmp_path), "--quiet"]) == 2
    assert "holds no learngene-*.pt files" in capsys.readouterr().err
