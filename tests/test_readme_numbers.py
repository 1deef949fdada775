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


def test_the_headline_table_quotes_the_study_it_links():
    section = headline_section()
    name = re.search(r"\((bench/results/study-[^)]+)\.md\)", section).group(1)
    with open(os.path.join(ROOT, name + ".json"), encoding="utf-8") as f:
        study = json.load(f)
    rows, paired = study["rows"], study["paired"]
    setting = study["settings"][0]
    quoted = 0
    for row in ("scratch", "pretrained", "slimming", "l1-learngene", "random-learngene"):
        line = next(line for line in section.splitlines() if line.startswith(f"| {row} ("))
        score, diff = rows[row][setting], paired[f"learngene-{row}"][setting]
        assert f"{percent(score['mean'])} ± {percent(score['ci95'])}" in line
        assert f"{percent(diff['mean'], sign=True)} ± {percent(diff['ci95'])} ({diff['won']}/{diff['units']})" in line
        quoted += 1
    learngene = rows["learngene"][setting]
    assert f"**{percent(learngene['mean'])} ± {percent(learngene['ci95'])}**" in section
    assert quoted == 5
