"""The built-in procedural dataset: deterministic, well-formed, and neither trivial nor noise."""
import pytest
import torch

from learngene_ea.data.base import FewShotDataset
from learngene_ea.data.synthetic import make_synthetic
from learngene_ea.errors import UserError

PER_CLASS = 20


@pytest.fixture(scope="module")
def ds() -> FewShotDataset:
    return make_synthetic(seed=0, images_per_class=PER_CLASS)


def _fresh(**kwargs) -> FewShotDataset:
    """Generate again instead of returning the memoised object."""
    make_synthetic.cache_clear()
    return make_synthetic(**kwargs)


def test_images_are_uint8_rgb_32x32_grouped_by_class(ds):
    assert isinstance(ds, FewShotDataset)
    assert ds.images.dtype == torch.uint8
    assert ds.images.shape == (100 * PER_CLASS, 3, 32, 32)
    assert ds.labels.dtype == torch.int64
    assert ds.labels.tolist() == [c for c in range(100) for _ in range(PER_CLASS)]
    assert ds.name == "synthetic"
    assert ds.class_names[17] == "synth-017" and len(ds.class_names) == 100


def test_every_class_has_images_per_class_images(ds):
    assert set(ds.images_per_class().values()) == {PER_CLASS}


def test_split_is_64_16_20_by_class_id_disjoint_and_complete(ds):
    assert ds.splits["train"] == list(range(64))
    assert ds.splits["val"] == list(range(64, 80))
    assert ds.splits["test"] == list(range(80, 100))
    every = ds.splits["train"] + ds.splits["val"] + ds.splits["test"]
    assert sorted(every) == list(range(100))


def test_same_seed_gives_bit_identical_data():
    a = _fresh(seed=3, images_per_class=5)
    b = _fresh(seed=3, images_per_class=5)
    assert a is not b
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert a.mean == b.mean and a.std == b.std


def test_images_do_not_depend_on_the_number_of_threads_and_the_setting_is_kept():
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = _fresh(seed=4, num_classes=6, images_per_class=40, split_sizes=(4, 1, 1))
        assert torch.get_num_threads() == 1
        torch.set_num_threads(2)
        two = _fresh(seed=4, num_classes=6, images_per_class=40, split_sizes=(4, 1, 1))
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert torch.equal(one.images, two.images)


def test_different_seed_gives_different_data(ds):
    other = make_synthetic(seed=1, images_per_class=PER_CLASS)
    assert not torch.equal(ds.images, other.images)
    # not just a few pixels: most images change
    changed = (ds.images != other.images).flatten(1).any(1).float().mean()
    assert changed > 0.99


def test_repeated_calls_return_the_memoised_object():
    first = make_synthetic(seed=5, images_per_class=4)
    assert make_synthetic(seed=5, images_per_class=4, split_sizes=[64, 16, 20]) is first


def _channel_stats(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = images.double().permute(1, 0, 2, 3).reshape(3, -1) / 255.0
    return x.mean(dim=1), x.std(dim=1, unbiased=False)


def test_mean_and_std_are_the_statistics_of_the_training_classes_only(ds):
    train = torch.isin(ds.labels, torch.tensor(ds.splits["train"]))
    mean, std = _channel_stats(ds.images[train])
    assert torch.allclose(torch.tensor(ds.mean, dtype=torch.float64), mean, atol=1e-9)
    assert torch.allclose(torch.tensor(ds.std, dtype=torch.float64), std, atol=1e-9)
    # validation and test pixels would move them: they are no part of the normalisation
    every_mean, every_std = _channel_stats(ds.images)
    assert (torch.tensor(ds.mean, dtype=torch.float64) - every_mean).abs().max() > 1e-4
    assert (torch.tensor(ds.std, dtype=torch.float64) - every_std).abs().max() > 1e-4
    assert all(0.1 < s < 0.4 for s in ds.std)  # images use the range, not saturated


def test_classes_look_different(ds):
    per_class = ds.images.double().view(100, PER_CLASS, -1) / 255.0
    class_means = per_class.mean(1)
    dist = torch.cdist(class_means, class_means) + torch.eye(100) * 1e9
    # every pair of class mean images differs clearly (RMS over pixels)
    assert dist.min() / class_means.shape[1] ** 0.5 > 0.01


def _nearest_class_mean_accuracy(features: torch.Tensor, fit: int) -> float:
    """features [classes, images, d]: class means of the first ``fit`` images, score the rest."""
    means = features[:, :fit].mean(1)
    held_out = features[:, fit:]
    classes, per_class = held_out.shape[:2]
    pred = torch.cdist(held_out.reshape(classes * per_class, -1), means).argmin(1)
    truth = torch.arange(classes).repeat_interleave(per_class)
    return float((pred == truth).double().mean())


def test_classes_carry_signal_but_are_not_separable_by_raw_pixels(ds):
    test_ids = ds.splits["test"]
    pixels = ds.images.double().view(100, PER_CLASS, -1)[test_ids] / 255.0
    accuracy = _nearest_class_mean_accuracy(pixels, fit=15)
    chance = 1.0 / len(test_ids)
    assert 1.5 * chance < accuracy < 0.6


def test_mean_colour_alone_does_not_identify_the_class(ds):
    test_ids = ds.splits["test"]
    colour = ds.images.double().mean(dim=(2, 3)).view(100, PER_CLASS, 3)[test_ids]
    assert _nearest_class_mean_accuracy(colour, fit=15) < 0.5


def test_other_sizes_and_splits():
    small = make_synthetic(seed=0, num_classes=10, images_per_class=3, image_size=16,
                           split_sizes=(6, 2, 2))
    assert small.images.shape == (30, 3, 16, 16)
    assert small.splits == {"train": list(range(6)), "val": [6, 7], "test": [8, 9]}


def test_a_class_does_not_depend_on_how_many_classes_are_generated():
    few = make_synthetic(seed=0, num_classes=4, images_per_class=3, split_sizes=(2, 1, 1))
    many = make_synthetic(seed=0, num_classes=10, images_per_class=3, split_sizes=(6, 2, 2))
    assert torch.equal(few.images, many.images[:12])


def test_split_sizes_that_do_not_add_up_are_a_user_error():
    with pytest.raises(UserError, match="split_sizes"):
        make_synthetic(num_classes=100, images_per_class=2, split_sizes=(64, 16, 10))
