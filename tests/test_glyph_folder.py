"""bench/make_glyph_folder.py: the second, harder check's image folder (not shipped; made by a script)."""
import numpy as np

from bench.make_glyph_folder import make_glyph_folder
from conftest import nearest_centroid_accuracy
from learngene_ea.config.loading import load_config
from learngene_ea.data import load_dataset


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
    assert nearest_centroid_accuracy(images, labels) > 0.6
