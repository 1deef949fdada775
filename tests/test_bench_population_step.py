"""The population_step row of ``python -m bench``, with tiny sizes: the baseline's package runs beside
this tree's in one process, and the row counts the step's operations and times both."""
import subprocess

import pytest

from conftest import ROOT, tiny_overrides

BASELINE = "6e427de"  # main before issue #25's item 2: a Python loop over descendants in the step


def _has_commit(commit):
    return subprocess.run(["git", "cat-file", "-e", f"{commit}^{{commit}}"], cwd=ROOT,
                          capture_output=True).returncode == 0


@pytest.mark.skipif(not _has_commit(BASELINE), reason="the baseline commit is not in this clone's history")
def test_the_row_compares_the_baseline_step_with_this_trees_side_by_side(capsys):
    import sys

    from bench.population_step import BEFORE, bench_population_step
    from bench.run import print_table

    row = bench_population_step(BASELINE, 0, sizes=(1, 3), steps=2, overrides=tuple(tiny_overrides()))
    assert not any(name.startswith(BEFORE) for name in sys.modules)  # the baseline is unloaded again
    one, three = row["training_step"]["P=1"], row["training_step"]["P=3"]
    # the baseline's step loops over descendants, this tree's does not
    assert three["before_outermost_aten_ops_per_step"] > one["before_outermost_aten_ops_per_step"]
    assert three["after_outermost_aten_ops_per_step"] < three["before_outermost_aten_ops_per_step"]
    assert all(r["after_images_per_second"] > 0 and len(r["after_seconds"]) == 2 for r in (one, three))
    chunk = row["evaluate_chunk"]
    assert chunk["stacked"] == {"before": [4] * 4, "after": [4] * 4}
    assert chunk["accuracies"]["before"] == chunk["accuracies"]["after"]  # the same evaluations, bit for bit
    print_table({"population_step": row})
    lines = capsys.readouterr().out.splitlines()
    assert len([line for line in lines if "aten ops per step" in line]) == 2 and "evaluate_chunk" in lines[-1]
