"""The Python API under the command lines: the README's "From Python" example runs, results are typed records."""
import json
import os
import re
import shutil

import pytest

from conftest import ROOT, tiny_overrides

# what makes the README's example take seconds here (its own overrides still apply after these)
FAST = tiny_overrides(**{"runtime.backend": "serial", "fitness.rescore_episodes": 0, "transfer.episodes": 2,
                         "transfer.steps": 2, "transfer.shots": "[1]", "transfer.limited_data": 0,
                         "transfer.n_query": 5, "transfer.pretrain_epochs": 1, "task.batch_size": 64})


def readme_example() -> str:
    """The first Python code block of the README's "From Python" section."""
    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    section = text.split("## From Python", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_readme_example_is_at_most_ten_lines():
    assert len(readme_example().strip().splitlines()) <= 10


def test_the_readme_example_runs_and_writes_what_the_command_line_writes(tmp_path, monkeypatch):
    import learngene_ea as lg
    from learngene_ea.config import loading

    shutil.copytree(os.path.join(ROOT, "genomes"), tmp_path / "genomes")
    monkeypatch.chdir(tmp_path)
    load = loading.load_config
    monkeypatch.setattr(loading, "load_config", lambda path=None, overrides=(): load(path, [*FAST, *(overrides or [])]))
    monkeypatch.setattr("learngene_ea.api.load_config", loading.load_config)
    namespace = {}
    exec(compile(readme_example(), "README.md", "exec"), namespace)  # noqa: S102 (our own README)
    run, transfer = namespace["run"], namespace["transfer"]
    assert isinstance(run, lg.RunResult) and isinstance(transfer, lg.TransferResult)
    with open(os.path.join(run.run_dir, "summary.json"), encoding="utf-8") as f:
        assert json.load(f) == json.loads(json.dumps(run.summary))
    with open(os.path.join(transfer.out_dir, "transfer.json"), encoding="utf-8") as f:
        assert json.load(f)["rows"] == json.loads(json.dumps(transfer.results["rows"]))
    assert 0.0 <= transfer.accuracy("learngene") <= 1.0
    assert transfer.table.startswith("|") or "learngene" in transfer.table


def test_a_run_from_python_equals_the_command_line_run(tmp_path):
    """``evolve_run`` writes the logbook ``python -m learngene_ea.run`` writes, to the last digit."""
    import learngene_ea as lg
    from learngene_ea.cli import run as run_cli

    overrides = tiny_overrides(**{"runtime.backend": "serial", "fitness.rescore_episodes": 0})
    result = lg.evolve_run(lg.load_config("default", overrides), str(tmp_path / "api"), log=lambda *a: None)
    argv = ["--run-dir", str(tmp_path / "cli"), "--quiet"] + [a for o in overrides for a in ("--set", o)]
    os.chdir(tmp_path)  # no genomes/ here: without --config, the shipped default recipe all the same
    try:
        assert run_cli.main(argv) == 0
    finally:
        os.chdir(ROOT)

    def logbook(folder):
        lines = [json.loads(line) for line in open(os.path.join(folder, "logbook.jsonl"), encoding="utf-8")]
        return [{k: v for k, v in line.items() if k != "seconds"} for line in lines]

    assert logbook(result.run_dir) == logbook(tmp_path / "cli")
    assert result.summary["finished"] is True and result.recipe == "defaults"


def test_the_api_is_importable_from_the_package():
    import learngene_ea as lg

    for name in ("load_config", "evolve_run", "resume_run", "evaluate_learngene", "run_study",
                 "RunResult", "TransferResult", "StudyResult"):
        assert callable(getattr(lg, name))
    with pytest.raises(AttributeError):
        lg.no_such_thing  # noqa: B018


def test_callbacks_receive_each_generation_record_and_the_saved_learngene_individual(tmp_path):
    """``evolve_run(..., callbacks=[...])``: a tracker's hook, called after each generation's files are written."""
    import learngene_ea as lg

    calls = []

    def track(record, best):  # what a W&B or MLflow user would log
        calls.append((record, best.fitness.values, os.path.exists(tmp_path / "run" / "learngene.pt")))

    cfg = lg.load_config("default", tiny_overrides(**{"runtime.backend": "serial", "fitness.rescore_episodes": 0,
                                                     "transfer.after_run": "false"}))
    result = lg.evolve_run(cfg, str(tmp_path / "run"), log=lambda *a: None, callbacks=[track])
    lines = [json.loads(line) for line in open(tmp_path / "run" / "logbook.jsonl", encoding="utf-8")]
    assert [record for record, _, _ in calls] == lines  # one call per generation, in order
    assert all(written for _, _, written in calls)
    assert calls[-1][1][1] == pytest.approx(result.summary["best"]["fraction"])
    calls.clear()
    lg.resume_run(str(tmp_path / "run"), ["ea.generations=3"], log=lambda *a: None, callbacks=[track])
    assert [record["gen"] for record, _, _ in calls] == [3]  # a resumed run calls them for its new generations


def test_a_callback_that_is_not_a_function_is_refused_before_the_run_folder_exists(tmp_path):
    import learngene_ea as lg

    cfg = lg.load_config("default", tiny_overrides(**{"runtime.backend": "serial"}))
    with pytest.raises(TypeError, match="callback"):
        lg.evolve_run(cfg, str(tmp_path / "run"), callbacks=["wandb"])
    assert not (tmp_path / "run").exists()
