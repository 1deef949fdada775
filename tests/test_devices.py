"""Which device a process trains on, resolved in one place (``core/devices.py``), and the copy of a dataset's
images kept there: one copy per dataset and device, never another dataset's, freed with its dataset. The cache
is exercised on torch's ``meta`` device (not the CPU, so it is cached, yet it needs no GPU)."""
import gc

import pytest
import torch

from learngene_ea.core import devices
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
    assert devices.canonical_device("cuda") == devices.canonical_device("cuda:0") == torch.device("cuda:0")
    assert devices.resolve_device("cuda") == torch.device("cuda:0")
    assert devices.canonical_device("cuda:1") == torch.device("cuda:1")
    assert devices.canonical_device("cpu") == torch.device("cpu")


@pytest.mark.parametrize("gpus,worker,device", [(2, 3, "cuda:1"), (2, 0, "cuda:0"), (1, 5, "cuda:0"), (0, 3, "cpu")])
def test_auto_is_the_gpu_of_the_worker_index_else_the_cpu(gpus, worker, device, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpus > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
    assert devices.resolve_device("auto", worker) == torch.device(device)
    assert devices.resolve_device("cpu", worker) == torch.device("cpu")


@pytest.mark.parametrize("setting,gpus", [("auto", 0), ("cpu", 0), ("cuda", 1), ("cuda:0", 1), ("cuda:12", 13)])
def test_a_device_setting_says_how_many_gpus_it_needs(setting, gpus):
    assert devices.is_device_setting(setting) and devices.gpus_needed(setting) == gpus


@pytest.mark.parametrize("text", ["banana", "gpu", "cuda:1:2", "cuda:-1", "CPU", "meta"])
def test_other_strings_are_not_device_settings(text):
    assert not devices.is_device_setting(text)
    with pytest.raises(ValueError, match="is not a device setting"):
        devices.gpus_needed(text)


def test_the_recipe_check_the_engines_and_the_transfer_ask_one_resolver(monkeypatch):
    """One place counts GPUs and resolves a setting: the recipe's check words it, a SCOOP worker adds its index,
    one process and the transfer take the setting as it is."""
    from learngene_ea.config.checks import check_device
    from learngene_ea.config.loading import load_config
    from learngene_ea.config.schema import ConfigError
    from learngene_ea.ea.workers import Workers
    from learngene_ea.parallel import scoop_engine
    from learngene_ea.transfer import pipeline

    monkeypatch.setattr(devices, "gpu_count", lambda: 2)
    monkeypatch.setattr(scoop_engine, "worker_index", lambda: 3)
    monkeypatch.setattr(pipeline, "configure_memory", lambda runtime: None)  # no process-wide set-up here
    cfg = load_config(None, ["runtime.device=cuda:7"])
    with pytest.raises(ConfigError, match=r"'runtime.device' is 'cuda:7' but this machine has 2 GPUs \(cuda:0 to "
                                          r"cuda:1\)"):
        check_device(cfg.runtime)
    check_device(load_config(None, ["runtime.device=cuda:1"]).runtime)
    assert scoop_engine.worker_device("auto") == torch.device("cuda:1")
    assert Workers().device("auto") == torch.device("cuda:0")
    assert pipeline.transfer_device(load_config(None, ["runtime.device=auto"]).runtime) == torch.device("cuda:0")
