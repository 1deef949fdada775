"""The README's headline numbers are the committed study's, digit for digit (a claim a benchmark shows)."""
import json
import os
import re

from conftest import ROOT


def headline_section():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        text = f.read()
    return text[text.index("## Headline numbers"):]


def percent(value, sign=False):
    return f"{100 * value:+.1f}".replace("-", "−") if sign else f"{100 * value:.1f}"


def load(name):
    with open(os.path.join(ROOT, name + ".json"), encoding="utf-8") as f:
        return json.load(f)


def cell(study, row):
    """``mean ± ci`` of a row and ``diff ± ci (won/units)`` of the learngene against it."""
    setting = study["settings"][0]
    score, diff = study["rows"][row][setting], study["paired"][f"learngene-{row}"][setting]
    return (f"{percent(score['mean'])} ± {percent(score['ci95'])}",
            f"{percent(diff['mean'], sign=True)} ± {percent(diff['ci95'])} ({diff['won']}/{diff['units']})")


def test_the_headline_table_quotes_the_studies_it_links_built_in_then_textures():
    section = headline_section()
    built_in, textures = re.findall(r"\((bench/results/study-(?:default|textures-default)-[^)]+)\.md\)", section)[:2]
    assert "textures" not in built_in and "textures" in textures
    studies = [load(built_in), load(textures)]
    rows = ("scratch", "pretrained", "slimming", "l1-learngene", "random-learngene", "layerwise-equal-size")
    for row in rows:
        line = next(line for line in section.splitlines() if line.startswith(f"| {row} ("))
        cells = [c.strip() for c in line.strip("|").split("|")][1:]
        assert cells == [part for study in studies for part in cell(study, row)], row
    for study in studies:
        learngene = study["rows"]["learngene"][study["settings"][0]]
        assert f"**{percent(learngene['mean'])} ± {percent(learngene['ci95'])}**" in section


def test_the_no_selection_row_quotes_the_ablation_studies_it_links():
    section = headline_section()
    line = next(line for line in section.splitlines() if line.startswith("| no selection ("))
    for name in ("study-no-selection-20261207", "study-textures-no-selection-20261207"):
        study = load(f"bench/results/{name}")
        score = study["rows"]["learngene"][study["settings"][0]]
        assert f"| {percent(score['mean'])} ± {percent(score['ci95'])} |" in line
    assert "study-no-selection-20261207.md" in section


def test_the_no_selection_differences_are_the_paired_episodes_committed_beside_the_studies():
    """``python -m bench.paired_variants ... --save`` kept every episode's accuracy of both variants."""
    import numpy as np

    from learngene_ea.fewshot.sampling import mean_and_ci95

    line = next(line for line in headline_section().splitlines() if line.startswith("| no selection ("))
    for name in ("test-no-selection-vs-default-20261207", "test-textures-no-selection-vs-default-20261207"):
        paired = load(f"bench/results/{name}")
        seeds = sorted(paired["default"])
        diff = np.concatenate([np.subtract(paired["default"][s]["learngene"], paired["no-selection"][s]["learngene"])
                               for s in seeds])
        mean, ci95 = mean_and_ci95(diff)
        assert diff.size == 45
        assert f"| {percent(mean, sign=True)} ± {percent(ci95)} ({int((diff > 0).sum())}/45) |" in line
