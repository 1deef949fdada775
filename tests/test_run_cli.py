"""``python -m learngene_ea.run``: the files a run writes, bad input, resume and seeding."""
import json
import os
import pickle

import pytest
import torch
import yaml

from conftest import ROOT, run_module, tiny_overrides


def sets(**extra):
    args = []
    for item in tiny_overrides(**extra):
        args += ["--set", item]
    return args


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "tiny"
    result = run_module(["-m", "learngene_ea.run", "--config", os.path.join(ROOT, "genomes", "default.yaml"),
                         *sets(), "--run-dir", str(run_dir), "--quiet"], cwd=ROOT)
    assert result.returncode == 0, result.stderr
    return run_dir, result


def test_a_run_writes_every_output_file(finished_run):
    run_dir, _ = finished_run
    for name in ("config.yaml", "logbook.jsonl", "learngene.pt", "evolution.png", "summary.json",
                 "checkpoints/latest.pkl", "checkpoints/gen_0000.pkl", "checkpoints/gen_0002.pkl"):
        assert (run_dir / name).is_file(), name


def test_saved_config_is_the_resolved_one(finished_run):
    run_dir, _ = finished_run
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["ea"]["population_size"] == 4 and saved["model"]["width"] == 0.25
    assert set(saved) >= {"seed", "model", "data", "task", "fitness", "ea", "operators", "transfer"}


def test_logbook_has_one_line_per_generation_with_the_fields(finished_run):
    run_dir, _ = finished_run
    lines = [json.loads(line) for line in (run_dir / "logbook.jsonl").read_text().splitlines()]
    assert [r["gen"] for r in lines] == [0, 1, 2]
    for r in lines:
        assert {"gen", "evals", "acc_min", "acc_avg", "acc_max", "frac_min", "frac_avg", "best_id",
                "seconds"} <= set(r)
        assert r["acc_min"] <= r["acc_avg"] <= r["acc_max"]
    assert lines[0]["evals"] == 4


def test_summary_has_the_fields(finished_run):
    run_dir, _ = finished_run
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["generations_run"] == 3
    assert {"accuracy", "ci95", "fraction", "num_params"} <= set(summary["best"])
    assert summary["best"]["fraction"] <= 0.3 + 1e-9 and summary["best"]["reached_target"]
    assert summary["wall_seconds"] > 0 and summary["seconds_per_generation"] > 0


def test_learngene_file_loads_with_weights_only(finished_run):
    run_dir, _ = finished_run
    state = torch.load(run_dir / "learngene.pt", weights_only=True)
    assert state["family"] == "conv4" and state["fraction"] <= 0.3 + 1e-9
    assert state["meta"]["reached_target"] is True


def test_checkpoint_holds_population_rng_and_config(finished_run):
    from learngene_ea.checkpoint import load_checkpoint

    run_dir, _ = finished_run
    payload = load_checkpoint(run_dir / "checkpoints" / "latest.pkl")
    assert payload["generation"] == 2 and len(payload["population"]) == 4
    assert {"python", "numpy", "torch"} <= set(payload["rng"])
    assert payload["config"]["ea"]["population_size"] == 4
    assert len(payload["logbook"]) == 3 and len(payload["halloffame"]) >= 1


def test_evolution_png_is_a_real_plot(finished_run):
    import matplotlib.image

    run_dir, _ = finished_run
    data = (run_dir / "evolution.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    pixels = matplotlib.image.imread(run_dir / "evolution.png")
    assert pixels.shape[0] > 200 and pixels.shape[1] > 400
    assert len({tuple(p) for p in pixels.reshape(-1, pixels.shape[-1])[::97]}) > 10  # not blank


def test_run_prints_one_line_per_generation(finished_run):
    _, result = finished_run
    lines = [line for line in result.stdout.splitlines() if line.startswith("gen ")]
    assert len(lines) == 3 and "learngene:" in result.stdout


def test_an_existing_run_directory_is_never_overwritten(finished_run):
    run_dir, _ = finished_run
    before = (run_dir / "learngene.pt").read_bytes()
    result = run_module(["-m", "learngene_ea.run", *sets(), "--run-dir", str(run_dir), "--quiet"], cwd=ROOT)
    assert result.returncode == 2 and "already exists" in result.stderr
    assert (run_dir / "learngene.pt").read_bytes() == before


@pytest.mark.parametrize("args,message", [
    (["--set", "ea.population_size=-1"], "'ea.population_size' is -1"),
    (["--set", "ea.target_fraction=0"], "'ea.target_fraction' is 0"),
    (["--set", "ea.target_fraction=1.5"], "'ea.target_fraction' is 1.5"),
    (["--set", "model.family=vgg99"], "'model.family' is 'vgg99'"),
    (["--set", "data.name=cifar"], "'data.name' is 'cifar'"),
    (["--set", "ea.populaton_size=4"], "did you mean 'ea.population_size'"),
    (["--set", "ea.generations=many"], "'ea.generations' must be an integer"),
    (["--config", "no/such/recipe.yaml"], "does not exist"),
    (["--set", "data.name=cifarfs", "--set", "data.root=/no/such/folder"], "/no/such/folder"),
    (["--set", "operators.mutate={function: 'nowhere_xyz:f'}"], "operators.mutate.function"),
    (["--resume", "/no/such/run"], "does not exist"),
])
def test_bad_input_exits_2_with_one_sentence_and_no_traceback(args, message, tmp_path):
    result = run_module(["-m", "learngene_ea.run", *sets(), *args, "--run-dir", str(tmp_path / "r"), "--quiet"],
                        cwd=ROOT, timeout=120)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_debug_flag_shows_the_traceback(tmp_path):
    result = run_module(["-m", "learngene_ea.run", "--set", "ea.population_size=-1", "--debug",
                         "--run-dir", str(tmp_path / "r")], cwd=ROOT, timeout=120)
    assert result.returncode != 0 and "Traceback" in result.stderr
