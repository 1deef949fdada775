"""task.head_init: pool: the gene pool keeps its warm start's head over every training class; a
descendant starts from its task's rows of it, and the merge moves each row by the mean update of the
descendants whose task had that class (as it moves the gene weights)."""
import json

import numpy as np
import pytest
import torch

from conftest import stopped_after, tiny_overrides
from learngene_ea.api.run import given_pool
from learngene_ea.cli import run as run_cli
from learngene_ea.config.loading import load_config
from learngene_ea.core.individual import make_individual
from learngene_ea.core.learngene import full_masks
from learngene_ea.core.models import arch_spec, build_model
from learngene_ea.ea import gene_pool
from learngene_ea.ea.fitness import evaluate, evaluate_chunk, inflate_descendant
from learngene_ea.ea.workers import Workers
from learngene_ea.errors import UserError
from learngene_ea.io.checkpoint import load_checkpoint

HEAD = {"fitness.inheritance": "pool", "fitness.rescore_episodes": 0, "pool.warm_start_fraction": 0.5,
        "task.head_init": "pool"}


def _rows(classes, offset, pool):
    weight, bias = pool.head_rows(classes)
    return {"classes": list(classes), "weight": weight + np.float32(offset), "bias": bias + np.float32(offset)}


def _contribution(ident, pool, rows):
    masks = full_masks(pool.learngene.spec)
    trained = pool.learngene.restrict(masks)
    trained.meta = {"head": rows}
    return ident, masks, trained


def test_each_head_row_moves_to_the_mean_of_the_descendants_whose_task_had_its_class():
    model = build_model("conv4", 0.25, 3, 5, seed=0)
    pool = gene_pool.pool_from_model(model, {"kind": "init", "images": 0}, head_classes=[10, 11, 12, 13, 14])
    before = {k: np.copy(v) for k, v in pool.head.items() if k != "classes"}
    first = _contribution(1, pool, _rows([11, 10], 1.0, pool))
    second = _contribution(2, pool, _rows([12, 11], 3.0, pool))
    assert gene_pool.merge_head(pool, [second, first]) == 3
    moved = pool.head["weight"] - before["weight"]
    assert np.allclose(moved[:3], np.array([1.0, 2.0, 3.0])[:, None], atol=1e-6)
    assert np.allclose(pool.head["bias"] - before["bias"], [1.0, 2.0, 3.0, 0.0, 0.0], atol=1e-6)
    assert np.array_equal(moved[3:], np.zeros_like(moved[3:]))  # classes no task had stay


def test_a_pool_without_a_head_merges_its_weights_alone_and_old_checkpoints_load_without_one():
    pool = gene_pool.pool_from_model(build_model("conv4", 0.25, 3, 5, seed=0), {"kind": "init", "images": 0})
    assert pool.head is None and gene_pool.merge_head(pool, []) == 0
    payload = pool.to_payload()
    del payload["head"]  # written before the head existed
    assert gene_pool.GenePool.from_payload(payload).head is None


@pytest.fixture(scope="module")
def head_cfg():
    return load_config(None, tiny_overrides(**HEAD))


@pytest.fixture(scope="module")
def published(head_cfg):
    pool = gene_pool.initial_pool(head_cfg)
    key = gene_pool.publish(pool, head_cfg.runtime, Workers())
    yield pool, key
    gene_pool.withdraw(key)


def _pool_individual(cfg, key, ident):
    spec = arch_spec(cfg.model.network, cfg.model.width, cfg.data.channels)
    ind = make_individual(spec, full_masks(spec), ident)
    ind.pool_key = key
    return ind


def test_the_pool_head_is_the_warm_starts_over_every_training_class(published, tiny_dataset):
    pool, _ = published
    train = [int(c) for c in tiny_dataset.splits["train"]]
    assert pool.head["classes"] == train
    assert pool.head["weight"].shape[0] == len(train) and pool.head["bias"].shape == (len(train),)
    payload = gene_pool.GenePool.from_payload(pool.to_payload())  # what a checkpoint keeps
    assert payload.head["classes"] == train and np.array_equal(payload.head["weight"], pool.head["weight"])


def test_a_descendant_starts_from_its_tasks_rows_of_the_pool_head(head_cfg, published, tiny_dataset):
    pool, key = published
    model, task, _ = inflate_descendant(_pool_individual(head_cfg, key, 3), head_cfg, tiny_dataset, 1, "cpu")
    weight, bias = pool.head_rows(task.class_ids)
    assert torch.equal(model.head.weight.detach(), torch.from_numpy(weight))
    assert torch.equal(model.head.bias.detach(), torch.from_numpy(bias))
    random_cfg = load_config(None, tiny_overrides(**{**HEAD, "task.head_init": "random"}))
    other, _, _ = inflate_descendant(_pool_individual(head_cfg, key, 3), random_cfg, tiny_dataset, 1, "cpu")
    assert not torch.equal(other.head.weight, model.head.weight)


def test_trained_rows_come_back_alike_from_one_by_one_and_stacked_evaluation(head_cfg, published):
    pool, key = published
    alone = [evaluate(_pool_individual(head_cfg, key, i), head_cfg) for i in (1, 2)]
    stacked = evaluate_chunk([_pool_individual(head_cfg, key, i) for i in (1, 2)], head_cfg)
    assert all(e.info.get("stacked") == 2 for e in stacked)
    for one, many in zip(alone, stacked):
        rows, rows_stacked = one.learngene.meta["head"], many.learngene.meta["head"]
        assert rows["classes"] == rows_stacked["classes"]
        assert np.allclose(rows["weight"], rows_stacked["weight"], atol=1e-4)
        inherited, _ = pool.head_rows(rows["classes"])
        assert not np.allclose(rows["weight"], inherited)  # they were trained


def _args(run_dir):
    args = []
    for item in tiny_overrides(**HEAD):
        args += ["--set", item]
    return args + ["--run-dir", str(run_dir), "--quiet"]


def _head_and_logbook(run_dir):
    head = load_checkpoint(run_dir / "checkpoints" / "latest.pkl")["pool"]["head"]
    logbook = [{k: v for k, v in json.loads(line).items() if k != "seconds"}
               for line in (run_dir / "logbook.jsonl").read_text().splitlines()]
    return head, logbook


def test_a_run_moves_the_pool_head_and_resumes_bit_for_bit(tmp_path):
    whole, stopped = tmp_path / "whole", tmp_path / "stopped"
    assert run_cli.main(_args(whole)) == 0
    with stopped_after(1):
        assert run_cli.main(_args(stopped)) == 130
    assert run_cli.main(["--resume", str(stopped), "--quiet"]) == 0
    (head, logbook), (head_again, logbook_again) = _head_and_logbook(whole), _head_and_logbook(stopped)
    assert logbook == logbook_again
    assert np.array_equal(head["weight"], head_again["weight"]) and np.array_equal(head["bias"], head_again["bias"])
    history = load_checkpoint(whole / "checkpoints" / "latest.pkl")["pool"]["history"]
    assert all(record["moved"]["head rows"] > 0 for record in history)


@pytest.mark.parametrize("without", [["pool.warm_start_fraction=0"],
                                     ["pool.warm_start_fraction=0", "fitness.inheritance=lamarckian"]])
def test_a_pool_head_without_a_pool_warm_start_is_refused_in_one_sentence(tmp_path, capsys, without):
    assert run_cli.main(_args(tmp_path / "run") + [a for item in without for a in ("--set", item)]) == 2
    err = capsys.readouterr().err
    assert "'task.head_init' is pool" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_from_pretrained_refuses_a_pool_head(head_cfg, tmp_path):
    path = tmp_path / "net.pt"
    torch.save(build_model("conv4", head_cfg.model.width, 3, 7).state_dict(), path)
    with pytest.raises(UserError, match="task.head_init=pool"):
        given_pool(str(path), head_cfg)
