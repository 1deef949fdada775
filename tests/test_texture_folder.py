"""bench/make_texture_folder.py: #37's harder colour dataset (not shipped; made by a script)."""
import numpy as np

from bench.make_texture_folder import make_texture_folder
from conftest import nearest_centroid_accuracy
from learngene_ea.config.loading import load_config
from learngene_ea.data import load_dataset


def test_a_class_is_told_by_its_structure_more_than_by_its_colour(tmp_path):
    out = tmp_path / "textures"
    names = make_texture_folder(str(out), classes=20, per_class=12, size=32)
    cfg = load_config(None, ["data.name=imagefolder", f"data.root={out}", f"data.cache_dir={tmp_path / 'cache'}"])
    dataset = load_dataset(cfg.data)
    assert sorted(dataset.class_names) == names and tuple(dataset.images.shape) == (240, 3, 32, 32)
    images, labels = np.asarray(dataset.images, dtype=np.float64), np.asarray(dataset.labels)
    assert np.abs(images[:, 0] - images[:, 1]).mean() > 10  # in colour, not grey
    colour = images.mean(axis=(2, 3))
    # the amplitude spectrum ignores where the waves start (a patch's phases are its own)
    spectrum = np.log1p(np.abs(np.fft.fft2(images.mean(1)))).reshape(len(images), -1)
    by_spectrum, by_colour = nearest_centroid_accuracy(spectrum, labels), nearest_centroid_accuracy(colour, labels)
    assert by_spectrum > 0.6 and by_colour < by_spectrum - 0.2  # palettes are shared: colour is only a hint
