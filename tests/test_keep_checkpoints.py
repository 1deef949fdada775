"""runtime.keep_checkpoints: K keeps the newest K generation files (and latest.pkl, start.pkl); 0 keeps all.
A run folder thinned so still resumes to exactly the uninterrupted run."""
import os

import pytest

from conftest import stopped_after
from learngene_ea.cli import run as run_cli
from learngene_ea.io.checkpoint import load_checkpoint, prune_generation_files
from test_resume import GENERATIONS, comparable_logbook, same_learngene, sets


def checkpoint_names(run_dir):
    return sorted(os.listdir(run_dir / "checkpoints"))


@pytest.fixture(scope="module")
def kept_two(tmp_path_factory):
    """An uninterrupted run of GENERATIONS generations keeping two generation files."""
    run_dir = tmp_path_factory.mktemp("keep2") / "run"
    assert run_cli.main([*sets(**{"runtime.keep_checkpoints": 2}), "--run-dir", str(run_dir), "--quiet"]) == 0
    return run_dir


def test_keeping_two_leaves_the_two_newest_generation_files_with_latest_and_start(kept_two):
    assert checkpoint_names(kept_two) == ["gen_0002.pkl", "gen_0003.pkl", "latest.pkl", "start.pkl"]
    assert load_checkpoint(kept_two / "checkpoints" / "latest.pkl")["generation"] == GENERATIONS


def test_keeping_zero_keeps_every_generation_file(tmp_path):
    run_dir = tmp_path / "run"
    assert run_cli.main([*sets(**{"ea.generations": 2}), "--run-dir", str(run_dir), "--quiet"]) == 0
    assert checkpoint_names(run_dir) == ["gen_0000.pkl", "gen_0001.pkl", "gen_0002.pkl", "latest.pkl", "start.pkl"]


def test_a_run_folder_keeping_two_resumes_to_the_uninterrupted_run(kept_two, tmp_path):
    run_dir = tmp_path / "run"
    with stopped_after(2):
        assert run_cli.main([*sets(**{"runtime.keep_checkpoints": 2}), "--run-dir", str(run_dir), "--quiet"]) == 130
    assert checkpoint_names(run_dir) == ["gen_0001.pkl", "gen_0002.pkl", "latest.pkl", "start.pkl"]
    assert run_cli.main(["--resume", str(run_dir), "--quiet"]) == 0
    assert comparable_logbook(run_dir) == comparable_logbook(kept_two)
    assert same_learngene(run_dir, kept_two)
    assert checkpoint_names(run_dir) == checkpoint_names(kept_two)


def test_with_latest_and_the_newest_file_corrupted_the_older_kept_file_resumes_the_run(kept_two, tmp_path, capsys):
    run_dir = tmp_path / "run"
    with stopped_after(2):
        assert run_cli.main([*sets(**{"runtime.keep_checkpoints": 2}), "--run-dir", str(run_dir), "--quiet"]) == 130
    for name in ("latest.pkl", "gen_0002.pkl"):
        path = run_dir / "checkpoints" / name
        path.write_bytes(path.read_bytes()[:1000])  # truncated
    assert run_cli.main(["--resume", str(run_dir), "--quiet"]) == 0
    assert "truncated or corrupted" in capsys.readouterr().out
    assert comparable_logbook(run_dir) == comparable_logbook(kept_two)
    assert same_learngene(run_dir, kept_two)


def test_a_new_run_seeds_its_population_from_a_folder_keeping_two(kept_two, tmp_path):
    new_dir = tmp_path / "seeded"
    assert run_cli.main([*sets(**{"ea.generations": 1}), "--seed-population", str(kept_two), "--best-k", "2",
                         "--run-dir", str(new_dir), "--quiet"]) == 0
    assert len(load_checkpoint(new_dir / "checkpoints" / "gen_0000.pkl")["population"]) == 4


def test_pruning_spares_later_generations_and_keeping_zero_deletes_nothing(tmp_path):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    for name in ("gen_0000.pkl", "gen_0001.pkl", "gen_0002.pkl", "gen_0005.pkl", "latest.pkl", "start.pkl"):
        (folder / name).write_bytes(b"x")
    assert prune_generation_files(tmp_path, 2, 0) == []
    deleted = prune_generation_files(tmp_path, 2, 1)  # resumed from generation 1: 5 is another run's
    assert sorted(os.path.basename(p) for p in deleted) == ["gen_0000.pkl", "gen_0001.pkl"]
    assert checkpoint_names(tmp_path) == ["gen_0002.pkl", "gen_0005.pkl", "latest.pkl", "start.pkl"]
