"""``runtime.tensorboard: true``: scalars per generation and per transfer row under runs/<run>/tb/."""
import sys

import pytest

from conftest import tiny_overrides
from learngene_ea.cli import run as run_cli


def sets(**extra):
    args = []
    for item in tiny_overrides(**{"runtime.tensorboard": "true", "fitness.rescore_episodes": 0, **extra}):
        args += ["--set", item]
    return args


def scalars(log_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(log_dir)).Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_a_run_logs_every_generation_to_tensorboard(tmp_path):
    pytest.importorskip("tensorboard", reason="the optional extra 'tensorboard' is not installed")
    run_dir = tmp_path / "run"
    assert run_cli.main([*sets(), "--run-dir", str(run_dir), "--quiet"]) == 0
    logged = scalars(run_dir / "tb")
    for tag in ("accuracy/min", "accuracy/avg", "accuracy/max", "fraction/avg", "best/ci95", "run/errors",
                "run/seconds"):
        assert [step for step, _ in logged[tag]] == [0, 1, 2], tag
    lines = (run_dir / "logbook.jsonl").read_text().splitlines()
    import json

    assert [value for _, value in logged["accuracy/max"]] == pytest.approx([json.loads(l)["acc_max"] for l in lines])


def test_transfer_rows_are_logged_per_setting(tmp_path):
    pytest.importorskip("tensorboard", reason="the optional extra 'tensorboard' is not installed")
    from learngene_ea.reports.tensorboard_log import TensorBoardLog

    board = TensorBoardLog(str(tmp_path))
    board.transfer({"rows": [{"method": "learngene", "arch": "conv4x0.5", "results": {"5-shot": {"mean": 0.45}}},
                             {"method": "scratch", "arch": "conv4x0.5", "results": {"5-shot": {"mean": 0.37}}}]})
    board.close()
    logged = scalars(tmp_path / "tb")
    assert logged["transfer/5-shot/learngene/conv4x0.5"] == [(0, pytest.approx(0.45))]
    assert logged["transfer/5-shot/scratch/conv4x0.5"] == [(0, pytest.approx(0.37))]


def test_asking_for_tensorboard_without_it_installed_is_one_sentence_before_any_compute(tmp_path, monkeypatch,
                                                                                       capsys):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # makes the import fail
    run_dir = tmp_path / "run"
    assert run_cli.main([*sets(), "--run-dir", str(run_dir), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "runtime.tensorboard is true but TensorBoard is not installed" in err
    assert not run_dir.exists()
