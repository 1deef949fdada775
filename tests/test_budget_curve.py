"""bench/budget_curve.py: the budget curve reads studies' pooled differences, never invents a missing row."""
import json
import os

import pytest

from bench import budget_curve


def write_study(folder, seeds, differences, fresh=0.5):
    """A study.json holding only what the curve reads: paired 5-shot differences and fresh validation."""
    os.makedirs(folder)
    paired = {name: {"5-shot": {"mean": mean, "ci95": 0.02, "won": 30, "lost": 10, "episodes": 45}}
              for name, mean in differences.items()}
    with open(os.path.join(folder, "study.json"), "w", encoding="utf-8") as f:
        json.dump({"seeds": seeds, "paired": paired, "validation": {"fresh": {"mean": fresh}}}, f)
    return folder


def test_the_curve_gives_each_studys_differences_at_its_compute_and_draws_them(tmp_path):
    one = write_study(tmp_path / "a", [0, 1, 2], {"learngene-l1-learngene": 0.03, "learngene-pretrained": -0.2})
    two = write_study(tmp_path / "b", [0, 1, 2], {"learngene-l1-learngene": 0.05}, fresh=0.55)
    out = str(tmp_path / "curve")
    assert budget_curve.main(["--study", f"new:2:{two}", "--study", f"new:1:{one}", "--out", out]) == 0
    points = json.load(open(out + ".json"))["points"]
    assert [(p["label"], p["multiplier"]) for p in points] == [("new", 1.0), ("new", 2.0)]
    assert points[0]["differences"]["learngene-pretrained"]["mean"] == -0.2
    assert "learngene-pretrained" not in points[1]["differences"]  # missing in that study: left out
    table = open(out + ".md").read()
    assert "| new | 1x | 3 | 50.0 | +3.0 ± 2.0 |" in table and "| new | 2x | 3 | 55.0 | +5.0 ± 2.0 | — |" in table
    assert os.path.getsize(out + ".png") > 1000


@pytest.mark.parametrize("text", ["new:1", "new:x:{folder}", "new:1:{folder}/nothing"])
def test_a_malformed_study_argument_is_one_sentence_and_exit_2(tmp_path, capsys, text):
    folder = write_study(tmp_path / "a", [0], {})
    assert budget_curve.main(["--study", text.format(folder=folder), "--out", str(tmp_path / "c")]) == 2
    assert capsys.readouterr().err.startswith("error: --study")
