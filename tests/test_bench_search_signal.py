"""bench.search_signal averages each generation's diversity figures over a study's seeds."""
import json

from bench import search_signal


def test_each_generation_is_the_mean_over_seeds(tmp_path):
    for seed, (masks, spread) in enumerate([(2, 0.01), (4, 0.03)]):
        folder = tmp_path / f"seed-{seed}"
        folder.mkdir()
        records = [{"gen": 0, "div_masks": 1, "div_jaccard": 1.0, "div_spread": None, "div_pair_se": 0.0,
                    "target_masks": 0, "target_jaccard": None},
                   {"gen": 1, "div_masks": masks, "div_jaccard": 0.5, "div_spread": spread, "div_pair_se": 0.01,
                    "target_masks": masks, "target_jaccard": 0.5}]
        (folder / "logbook.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    text = search_signal.table("x", search_signal.logbooks(str(tmp_path)))
    assert "| 0 | 1.000 | 1.000 | – | – | 0.000 | 0.000 | – |" in text
    assert "| 1 | 3.000 | 0.500 | 0.020 | – | 0.010 | 3.000 | 0.500 |" in text


def test_logbooks_of_older_runs_without_the_figures_are_skipped(tmp_path):
    (tmp_path / "seed-0").mkdir()
    (tmp_path / "seed-0" / "logbook.jsonl").write_text(json.dumps({"gen": 0, "evals": 5}) + "\n")
    assert search_signal.table("old", search_signal.logbooks(str(tmp_path))).count("\n| 0 |") == 0
