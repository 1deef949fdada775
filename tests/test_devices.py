"""Which device a process trains on, and the copy of a dataset's images kept there: one copy per
dataset and device, never another dataset's, freed with its dataset. The cache is exercised on
torch's ``meta`` device (not the CPU, so it is cached, yet it needs no GPU)."""
import gc

import torch

from learngene_ea.fewshot import batches
from learngene_ea.data.base import FewShotDataset


def dataset_of(n: int) -> FewShotDataset:
    return FewShotDataset(images=torch.zeros(n, 3, 4, 4, dtype=torch.uint8), labels=torch.zeros(n),
                          class_names=["a"], splits={"train": [0], "val": [], "test": []})


def test_the_device_copy_is_kept_once_per_dataset_and_device():
    dataset = dataset_of(3)
    copy = batches.images_on(dataset, "meta")
    assert copy.device.type == "meta" and copy.shape == dataset.images.shape
    assert batches.images_on(dataset, torch.device("meta")) is copy


def test_the_device_copy_is_freed_with_its_dataset():
    dataset = dataset_of(3)
    batches.images_on(dataset, "meta")
    key = id(dataset)
    assert key in batches._DEVICE_IMAGES
    del dataset
    gc.collect()
    assert key not in batches._DEVICE_IMAGES


def test_a_dataset_that_gets_a_dead_datasets_id_gets_its_own_images():
    """CPython reuses a freed object's address: a cache keyed by id() alone would hand a later
    dataset an earlier one's images (here: the wrong number of images)."""
    seen, reused = set(), 0
    for size in range(1, 40):  # one after the other, each freed before the next: addresses recur
        dataset = dataset_of(size)
        reused += id(dataset) in seen
        seen.add(id(dataset))
        assert batches.images_on(dataset, "meta").shape[0] == size
        del dataset
        gc.collect()
    assert reused  # the case was exercised


def test_replaced_images_are_copied_again():
    dataset = dataset_of(3)
    batches.images_on(dataset, "meta")
    dataset.images = torch.zeros(7, 3, 4, 4, dtype=torch.uint8)
    assert batches.images_on(dataset, "meta").shape[0] == 7


def test_cuda_and_cuda_0_are_one_device(monkeypatch):
    """``cuda`` is the current CUDA device: one key for ``cuda`` and ``cuda:0``, one copy on the GPU."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    assert batches.canonical_device("cuda") == batches.canonical_device("cuda:0") == torch.device("cuda:0")
    assert batches.resolve_device("cuda") == torch.device("cuda:0")
    assert batches.canonical_device("cuda:1") == torch.device("cuda:1")
    assert batches.canonical_device("cpu") == torch.device("cpu")
