"""``python -m learngene_ea.run``: the files a run writes, bad input, resume and seeding."""
import json
import os

import pytest
import torch
import yaml

from conftest import ROOT, run_module, tiny_overrides
from learngene_ea.cli import run as run_cli


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


def test_the_gpu_numerics_are_recorded_in_the_config_and_the_summary(finished_run):
    run_dir, _ = finished_run
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())["runtime"]
    assert (saved["deterministic"], saved["tf32"], saved["precision"]) == (True, False, "fp32")  # the defaults
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["numerics"] == {"device": "auto", "deterministic": True, "tf32": False, "precision": "fp32"}


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
    assert summary["finished"] is True  # written once, when the evolution is over


def test_learngene_file_loads_with_weights_only(finished_run):
    run_dir, _ = finished_run
    state = torch.load(run_dir / "learngene.pt", weights_only=True)
    assert state["family"] == "conv4" and state["fraction"] <= 0.3 + 1e-9
    assert state["meta"]["reached_target"] is True


def test_checkpoint_holds_population_rng_and_config(finished_run):
    from learngene_ea.io.checkpoint import load_checkpoint

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
    (["--set", "seed=99999999999999999999"], "'seed' is 99999999999999999999; it must be at most 4294967295"),
    (["--set", "ea.parsimony_tolerance=.nan"], "'ea.parsimony_tolerance' is nan; it must be a finite number"),
    (["--set", "runtime.stall_timeout=.inf"], "'runtime.stall_timeout' is inf; it must be a finite number"),
    (["--set", "runtime.device=banana"], "'runtime.device' is 'banana'; it must be auto, cpu, cuda or cuda:N"),
    (["--set", "ea.min_channels=64"], "'ea.target_fraction' (0.3) cannot be reached: with 'ea.min_channels' 64 the "
                                      "smallest learngene of conv4 x0.25 (mask groups of 16 channels) has fraction "
                                      "1.000; lower ea.min_channels to 8."),
    (["--set", "ea.target_fraction=0.001", "--set", "ea.min_channels=1"], "raise ea.target_fraction to 0.009"),
    (["--seed-population", "/no/such.pkl", "--best-k", "-3"], "--best-k -3: it must be a positive number"),
    (["--best-k", "2"], "--best-k 2: it only goes with --seed-population"),
])
def test_bad_input_exits_2_with_one_sentence_and_no_run_folder(args, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    assert run_cli.main([*sets(), *args, "--run-dir", str(tmp_path / "r"), "--quiet"]) == 2
    stderr = capsys.readouterr().err
    assert message in stderr
    assert len(stderr.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("make,message", [
    (lambda p: p.write_bytes(b"seed: 0\n\xff\xfe: 1\n"), "is not UTF-8 text (byte 0xff on line 2); save it as UTF-8"),
    (lambda p: p.write_text("ea:\n  population_size: 4\nseed: 1\nea:\n  generations: 1\n"),
     "gives the key 'ea' twice in one section (lines 1 and 4); keep one of them"),
    (lambda p: p.mkdir(), "is a folder, not a file; pass --config with a recipe .yaml file"),
    (lambda p: os.mkfifo(p), "is a fifo (named pipe), not a regular file; pass --config with a recipe .yaml file"),
    (lambda p: p.symlink_to(p.name), "is a symbolic-link loop; pass --config with a recipe .yaml file"),
])
def test_a_recipe_file_that_cannot_be_read_exits_2_naming_it(make, message, tmp_path, capsys):
    recipe = tmp_path / "recipe.yaml"
    make(recipe)
    assert run_cli.main(["--config", str(recipe), *sets(), "--run-dir", str(tmp_path / "r"), "--quiet"]) == 2
    stderr = capsys.readouterr().err
    assert stderr.strip().splitlines() == [f"error: Recipe {str(recipe)!r} {message}."]
    assert not (tmp_path / "r").exists()


def test_an_empty_recipe_is_noted_once(tmp_path, capsys):
    from learngene_ea.config import loading as config

    recipe = tmp_path / "empty.yaml"
    recipe.write_text("# nothing yet\n")
    assert run_cli.main(["--config", str(recipe), "--set", "ea.population_size=-1", "--quiet"]) == 2
    config.load_config(recipe)  # again in the same process: no second note
    assert capsys.readouterr().err.strip().splitlines() == [
        f"note: recipe {str(recipe)!r} is empty: every key at its default.",
        "error: 'ea.population_size' is -1; it must be at least 2."]


@pytest.mark.parametrize("gpus,message", [
    (0, "'runtime.device' is 'cuda:7' but torch finds no GPU on this machine; set runtime.device=auto or cpu."),
    (2, "'runtime.device' is 'cuda:7' but this machine has 2 GPUs (cuda:0 to cuda:1); set runtime.device=auto or "
        "a GPU from cuda:0 to cuda:1."),
])
def test_a_gpu_this_machine_lacks_exits_2_before_the_run_folder(gpus, message, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpus > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
    assert run_cli.main([*sets(), "--set", "runtime.device=cuda:7", "--run-dir", str(tmp_path / "r"), "--quiet"]) == 2
    assert capsys.readouterr().err.strip() == f"error: {message}"
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("key,value,message", [
    ("fitness.n_way", 20, "'fitness.n_way' is 20 but the dataset 'synthetic' has only 16 validation classes"),
    ("fitness.k_shot", 26, "'fitness.k_shot' (26) + 'fitness.n_query' (5) need 31 images per validation class"),
    ("task.num_classes", 65, "'task.num_classes' is 65 but the dataset 'synthetic' has only 64 training classes"),
    ("task.images_per_class", 31, "'task.images_per_class' (31) need 31 images per training class"),
    ("data.channels", 1, "'data.channels' is 1 but the images of 'synthetic' have 3"),
])
def test_a_recipe_the_dataset_cannot_serve_exits_2_before_any_folder_exists(key, value, message, tmp_path,
                                                                            capsys):
    assert run_cli.main([*sets(), "--set", f"{key}={value}", "--run-dir", str(tmp_path / "r"), "--quiet"]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("extra,message", [
    ({"transfer.n_way": 21}, "'transfer.n_way' is 21 but the dataset 'synthetic' has only 20 test classes"),
    ({"transfer.limited_data": 20}, "'transfer.limited_data' (20) + 'transfer.n_query' (15) need 35 images"),
])
def test_the_end_of_run_transfer_is_checked_before_the_run(extra, message, tmp_path, capsys):
    args = [*sets(**{"transfer.after_run": "true", **extra}), "--run-dir", str(tmp_path / "r"), "--quiet"]
    assert run_cli.main(args) == 2
    assert message in capsys.readouterr().err
    assert run_cli.main([*sets(**extra), "--run-dir", str(tmp_path / "r"), "--quiet", "--set",
                         "ea.generations=0", "--set", "fitness.rescore_episodes=0"]) == 0  # no transfer: runs


def test_the_default_recipe_with_20_way_fitness_exits_2_before_creating_anything(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # where runs/ would be made
    argv = ["--config", os.path.join(ROOT, "genomes", "default.yaml"), "--set", "fitness.n_way=20", "--quiet"]
    assert run_cli.main(argv) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: 'fitness.n_way' is 20 but the dataset 'synthetic' has only 16 validation classes; lower fitness.n_way."]
    assert os.listdir(tmp_path) == []


def test_an_evaluation_error_that_would_repeat_stops_with_exit_1_keeping_the_checkpoint(tmp_path, capsys,
                                                                                      monkeypatch):
    from learngene_ea.ea import fitness

    real = fitness.train_descendant

    def fail_in_generation_1(individual, cfg, dataset, draw, *args, **kwargs):
        if draw.generation == 1:
            raise ValueError("a bad setting")
        return real(individual, cfg, dataset, draw, *args, **kwargs)

    monkeypatch.setattr(fitness, "train_descendant", fail_in_generation_1)
    run_dir = tmp_path / "r"
    assert run_cli.main([*sets(), "--run-dir", str(run_dir), "--quiet"]) == 1
    stderr = capsys.readouterr().err
    assert "generation 1 failed with ValueError: a bad setting, an error that would repeat" in stderr
    assert "generation 0 is safe in checkpoints/latest.pkl" in stderr and "Traceback" not in stderr
    from learngene_ea.io.checkpoint import load_checkpoint

    assert load_checkpoint(run_dir / "checkpoints" / "latest.pkl")["generation"] == 0
    assert run_cli.main([*sets(), "--run-dir", str(tmp_path / "d"), "--quiet", "--debug"]) == 1
    assert "fail_in_generation_1" in capsys.readouterr().err  # --debug: the worker's traceback


def test_summary_and_learngene_give_the_selected_and_the_fresh_validation_accuracy(finished_run):
    run_dir, result = finished_run
    best = json.loads((run_dir / "summary.json").read_text())["best"]
    assert best["selected_among_evaluations"] == 4 + 3 + 3  # generation 0, then 3 offspring per generation
    fresh = best["fresh_validation"]
    assert fresh["episodes"] == 100 and 0.0 <= fresh["accuracy"] <= 1.0 and fresh["accuracy"] != best["accuracy"]
    meta = torch.load(run_dir / "learngene.pt", weights_only=True)["meta"]
    assert meta["fresh_validation"] == fresh
    assert "biased upward" in result.stdout and "on 100 fresh validation episodes" in result.stdout


def test_the_learngene_records_its_data_recipe_and_the_classes_it_saw(finished_run):
    run_dir, _ = finished_run
    meta = torch.load(run_dir / "learngene.pt", weights_only=True)["meta"]
    assert meta["data"]["name"] == "synthetic" and meta["data"]["images_per_class"] == 30
    assert meta["classes"]["train"] == [f"synth-{i:03d}" for i in range(64)]
    assert meta["classes"]["val"] == [f"synth-{i:03d}" for i in range(64, 80)]
    # evaluations x task.steps x task.batch_size, and as many again for genomes/default.yaml's warm start
    assert meta["training_images"] == 2 * (4 + 3 + 3) * 4 * 16


def test_debug_flag_shows_the_traceback(tmp_path):
    result = run_module(["-m", "learngene_ea.run", "--set", "ea.population_size=-1", "--debug",
                         "--run-dir", str(tmp_path / "r")], cwd=ROOT, timeout=120)
    assert result.returncode != 0 and "Traceback" in result.stderr
