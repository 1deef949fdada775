"""Config-aware plugins: a recipe's operator that declares ``config`` or (evaluate) ``dataset`` receives it."""
import json
import os
import pickle

import pytest

from conftest import ROOT, run_module, tiny_overrides
from learngene_ea.io.checkpoint import load_checkpoint
from learngene_ea.config.schema import OperatorSpec
from learngene_ea.data import load_dataset
from learngene_ea.ea.evolve import new_state
from learngene_ea.ea.plugins import resolve_operator
from learngene_ea.ea.toolbox import build_toolbox

SEEN = {}


def mut_seeing_config(individual, config, indpb=0.1):
    SEEN["config"] = config
    return (individual,)


def evaluate_seeing_everything(individual, config, dataset, bonus=0.0):
    SEEN.update(config=config, dataset=dataset)
    return (0.5 + bonus, 1.0)


def test_an_operator_declaring_config_receives_the_runs_config(tiny_cfg):
    function, kwargs = resolve_operator("mutate", "test_plugins:mut_seeing_config", {"indpb": 0.2}, tiny_cfg)
    assert kwargs == {"indpb": 0.2, "config": tiny_cfg}
    function(["ind"], **kwargs)
    assert SEEN["config"] is tiny_cfg


def test_an_evaluate_declaring_dataset_receives_the_dataset_loaded_where_it_runs(tiny_cfg):
    tiny_cfg.operators.evaluate = OperatorSpec("test_plugins:evaluate_seeing_everything", {"bonus": 0.25})
    toolbox = build_toolbox(tiny_cfg)
    # what SCOOP sends to a worker: the function, the config and the kwargs, never the dataset
    assert len(pickle.dumps(toolbox.evaluate)) < 20_000 < load_dataset(tiny_cfg.data).images.nbytes
    individual = new_state(tiny_cfg).population[0]
    assert pickle.loads(pickle.dumps(toolbox.evaluate))(individual) == (0.75, 1.0)
    assert SEEN["dataset"] is load_dataset(tiny_cfg.data) and SEEN["config"] == tiny_cfg


@pytest.mark.slow
def test_the_custom_operator_recipe_runs_its_own_evaluate_under_scoop(tmp_path):
    args = ["-m", "scoop", "-n", "2", "-m", "learngene_ea.run", "--config",
            os.path.join(ROOT, "genomes", "custom-operator.yaml"), "--run-dir", str(tmp_path / "run"), "--quiet"]
    for item in tiny_overrides(**{"ea.generations": 1, "fitness.rescore_episodes": 0}):
        args += ["--set", item]
    result = run_module(args, cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    population = load_checkpoint(tmp_path / "run" / "checkpoints" / "latest.pkl")["population"]
    # learngene_ea.examples:evaluate_quick ran (it records its episodes), with a trained learngene
    assert all(ind.evaluation["episodes"] == 10 and ind.learngene is not None for ind in population)
    assert [json.loads(line)["gen"] for line in (tmp_path / "run" / "logbook.jsonl").read_text().splitlines()] == [0, 1]
