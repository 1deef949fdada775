"""bench/make_glyph_folder.py: the second, harder check's image folder (not shipped; made by a script)."""
import hashlib
import os

import numpy as np

from bench.make_glyph_folder import main, make_glyph_folder
from learngene_ea.config.loading import load_config
from learngene_ea.data import load_dataset


def digest(folder):
    h = hashlib.sha1()
    for root, _, files in sorted(os.walk(folder)):
        for name in sorted(files):
            h.update(open(os.path.join(root, name), "rb").read())
    return h.hexdigest()


def test_the_same_arguments_write_the_same_files(tmp_path):
    make_glyph_folder(str(tmp_path / "a"), classes=3, per_class=2, size=16, seed=4)
    make_glyph_folder(str(tmp_path / "b"), classes=3, per_class=2, size=16, seed=4)
    make_glyph_folder(str(tmp_path / "c"), classes=3, per_class=2, size=16, seed=5)
    assert digest(tmp_path / "a") == digest(tmp_path / "b") != digest(tmp_path / "c")


def test_the_folder_loads_as_an_image_folder_whose_classes_are_the_glyphs(tmp_path):
    out = tmp_path / "glyphs"
    names = make_glyph_folder(str(out), classes=10, per_class=6, size=32)
    cfg = load_config(None, ["data.name=imagefolder", f"data.root={out}", "data.channels=1",
                             f"data.cache_dir={tmp_path / 'cache'}"])
    dataset = load_dataset(cfg.data)
    assert sorted(dataset.class_names) == names and dataset.images.shape[0] == 60
    # a glyph's images are closer to each other than to other glyphs' (what a class means)
    images = np.asarray(dataset.images, dtype=np.float64).reshape(60, -1)
    labels = np.asarray(dataset.labels)
    centroids = np.stack([images[labels == c].mean(0) for c in range(10)])
    nearest = np.argmin(((images[:, None, :] - centroids[None]) ** 2).sum(-1), axis=1)
    assert (nearest == labels).mean() > 0.6


def test_a_folder_that_holds_files_is_refused_with_exit_2(tmp_path, capsys):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "mine.txt").write_text("keep")
    assert main(["--out", str(tmp_path / "x")]) == 2
    assert "not empty" in capsys.readouterr().err and (tmp_path / "x" / "mine.txt").read_text() == "keep"
