"""gene_pool.png: written atomically, its colour scale spanning the scores, its labels inside the figure."""
import os

import matplotlib.figure
import numpy as np
import pytest

from learngene_ea.reports import pool as pool_report

TITLE = "Learngene scores of the gene pool: test"


def history(*rows):
    """One record per generation; each row's scores split into two mask groups."""
    return [{"gen": gen, "scores": {"blocks.0": list(row[:4]), "blocks.1": list(row[4:])}}
            for gen, row in enumerate(rows)]


@pytest.fixture
def drawn(monkeypatch):
    """Call as ``drawn(history)``: the figure plot_scores would write, laid out as save_figure lays it out."""
    figures = []

    def keep(fig, path):
        fig.tight_layout()
        fig.canvas.draw()
        figures.append(fig)

    monkeypatch.setattr(pool_report, "save_figure", keep)

    def draw(records):
        pool_report.plot_scores(records, "unused.png", TITLE)
        return figures[-1]

    return draw


def test_a_failed_write_leaves_the_earlier_picture_whole_and_no_partial_file(tmp_path, monkeypatch):
    path = tmp_path / "gene_pool.png"
    path.write_bytes(b"earlier picture")

    def dies_halfway(fig, target, **kwargs):
        half = b"\x89PNG\r\n\x1a\n half"
        if isinstance(target, (str, os.PathLike)):
            with open(target, "wb") as f:
                f.write(half)
        else:
            target.write(half)
        raise OSError("disk full")

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", dies_halfway)
    with pytest.raises(OSError, match="disk full"):
        pool_report.plot_scores(history([0.0] * 8, [0.01, -0.02] * 4), str(path), TITLE)
    assert path.read_bytes() == b"earlier picture"
    assert os.listdir(tmp_path) == ["gene_pool.png"]


def test_the_picture_is_a_png(tmp_path):
    path = tmp_path / "gene_pool.png"
    pool_report.plot_scores(history([0.0] * 8, [0.01, -0.02, 0.0, 0.03] * 2), str(path), TITLE)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_colour_limits_are_the_lowest_and_highest_score(drawn):
    fig = drawn(history([0.0] * 8, [0.004, -0.02, 0.0, 0.05, 0.001, -0.001, 0.0, 0.002]))
    image = fig.axes[0].images[0]
    assert (image.norm.vmin, image.norm.vmax) == (-0.02, 0.05)
    assert image.norm(0.0) == pytest.approx(0.5)  # white at 0, each sign stretched to its own extreme


def test_scores_of_one_sign_span_zero_to_their_extreme_in_that_sign_s_colours(drawn):
    fig = drawn(history([0.0, 0.01, 0.03, 0.0, 0.02, 0.0, 0.0, 0.005]))
    image = fig.axes[0].images[0]
    assert (image.norm.vmin, image.norm.vmax) == (0.0, 0.03)
    low, high = image.cmap(0.0), image.cmap(1.0)
    assert min(low[:3]) > 0.9  # 0 is white, not the other sign's red
    assert high[2] > high[0]  # the highest score is blue


def test_scores_of_exactly_zero_are_left_out_of_the_colour_scale(drawn):
    fig = drawn(history([0.0] * 8, [0.0, 0.01, -0.01, 0.0, 0.0, 0.0, 0.0, 0.0]))
    cells = fig.axes[0].images[0].get_array()
    assert np.ma.count_masked(cells) == 8 + 6


def test_the_colour_scale_label_lies_inside_the_figure_even_for_one_generation(drawn):
    fig = drawn(history([0.01, -0.02, 0.0, 0.03, 0.0, 0.0, 0.001, -0.004]))
    renderer = fig.canvas.get_renderer()
    label = fig.axes[1].yaxis.label
    assert "learngene score" in label.get_text()
    box, frame = label.get_window_extent(renderer), fig.bbox
    assert frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1


def test_when_every_score_is_zero_the_picture_says_why_instead_of_a_scale(drawn):
    fig = drawn(history([0.0] * 8, [0.0] * 8))
    assert len(fig.axes) == 1  # no colour bar
    assert "every score is 0" in fig.axes[0].texts[0].get_text()
