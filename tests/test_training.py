"""The training loop: random draws planned ahead on the CPU, one host-device transfer per block of
steps (not per step), and the same batches however the steps are blocked; scoring: one transfer
for all episodes."""
import contextlib
import dataclasses

import pytest
import torch

from learngene_ea import transfer
from learngene_ea.fewshot import training
from learngene_ea.config.schema import TransferConfig
from learngene_ea.core.models import build_model
from learngene_ea.fewshot.sampling import sample_episode, sample_episodes, sample_task
from learngene_ea.fewshot.batches import draw_crops, make_batch
from learngene_ea.fewshot.training import TrainSettings, train_on_task, train_stacked

# Tensor methods that move data between host and device or read a value back to the host:
# each one per step on a GPU is a copy and a stream synchronisation.
HOST_DEVICE_METHODS = ("to", "cpu", "cuda", "item", "tolist", "numpy", "__bool__", "__float__", "__int__")
# torch functions that do so: building a tensor on a device from host data, and bincount (on a GPU
# it reads the largest value back to size its output).
HOST_DEVICE_FUNCTIONS = ("as_tensor", "tensor", "bincount")


@contextlib.contextmanager
def counting_host_device_calls(monkeypatch):
    calls = []
    for owner, names in ((torch.Tensor, HOST_DEVICE_METHODS), (torch, HOST_DEVICE_FUNCTIONS)):
        for name in names:
            original = getattr(owner, name)

            def counted(*args, _name=name, _original=original, **kwargs):
                if _name not in ("as_tensor", "tensor") or kwargs.get("device") is not None:
                    calls.append(_name)
                return _original(*args, **kwargs)

            monkeypatch.setattr(owner, name, counted)
    try:
        yield calls
    finally:
        monkeypatch.undo()


def host_device_calls(monkeypatch, work):
    """How many host-device calls ``work()`` makes."""
    with counting_host_device_calls(monkeypatch) as calls:
        work()
    return len(calls)


def test_descendant_training_makes_no_host_device_call_per_step(tiny_dataset, monkeypatch):
    task = sample_task(tiny_dataset, 1, 5, 8)

    def train(steps, count=1):
        models = [build_model("conv4", 0.25, num_classes=5, seed=i) for i in range(count)]
        return lambda: train_stacked(models, tiny_dataset, [task] * count, TrainSettings(steps, 16, 0.01), seeds=list(range(count)))

    for count in (1, 3):  # alone and as a stacked network
        assert host_device_calls(monkeypatch, train(2, count)) == host_device_calls(monkeypatch, train(9, count))


def test_transfer_fine_tuning_makes_no_host_device_call_per_step(tiny_dataset, monkeypatch):
    episode = sample_episode(tiny_dataset, 3, 5, 5, 5, "test")

    def finetune(steps):
        tcfg = dataclasses.replace(TransferConfig(), steps=steps, batch_size=16)
        model = build_model("conv4", 0.25, num_classes=5, seed=0)
        return lambda: transfer.finetune_and_score(model, tiny_dataset, episode, tcfg, 0, "cpu")

    assert host_device_calls(monkeypatch, finetune(2)) == host_device_calls(monkeypatch, finetune(9))


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_scoring_makes_no_host_device_call_per_episode(tiny_dataset, monkeypatch, metric):
    model = build_model("conv4", 0.25, num_classes=5, seed=0)
    episodes = sample_episodes(tiny_dataset, 5, 6, 5, 3, 5, "val")

    def prototypes(count):
        return lambda: training.prototype_accuracies(model, tiny_dataset, episodes[:count], metric)

    def fine_tuned_heads(count):
        return lambda: transfer.finetune_head_accuracies(model, tiny_dataset, episodes[:count], 3)

    for score in (prototypes, fine_tuned_heads):
        assert host_device_calls(monkeypatch, score(2)) == host_device_calls(monkeypatch, score(6))


def test_episode_tensors_are_each_episodes_positions_and_labels(tiny_dataset):
    episodes = sample_episodes(tiny_dataset, 5, 3, 5, 2, 4, "val")
    images = training.episode_images(episodes)
    for e, (s, s_labels, q, q_labels) in zip(episodes, training.episode_tensors(episodes, images, "cpu")):
        assert images[s.numpy()].tolist() == e.support.tolist() and images[q.numpy()].tolist() == e.query.tolist()
        assert s_labels.tolist() == e.support_labels.tolist() and q_labels.tolist() == e.query_labels.tolist()
        assert s_labels.dtype == q_labels.dtype == torch.long


@pytest.mark.parametrize("augment", [True, False])
def test_batches_do_not_depend_on_how_steps_are_blocked(tiny_dataset, monkeypatch, augment):
    task = sample_task(tiny_dataset, 1, 5, 8)

    def trained(block):
        monkeypatch.setattr(training, "PLAN_BLOCK", block)
        model = build_model("conv4", 0.25, num_classes=5, seed=0)
        loss = train_on_task(model, tiny_dataset, task, TrainSettings(5, 16, 0.01, augment=augment), seed=7)
        return loss, model.state_dict()

    loss, state = trained(128)
    blocked_loss, blocked_state = trained(2)  # blocks of 2, 2 and 1 steps
    assert blocked_loss == loss
    assert all(torch.equal(state[k], blocked_state[k]) for k in state)


def test_a_crop_at_the_centre_without_flip_is_the_image_and_a_flip_mirrors_it(tiny_dataset):
    images, indices = tiny_dataset.images, torch.tensor([0, 1])
    mean, std = torch.zeros(1, 3, 1, 1), torch.ones(1, 3, 1, 1)
    plain = make_batch(images, indices, mean, std)
    centre = make_batch(images, indices, mean, std, torch.tensor([[4, 4], [4, 4], [0, 1]]))
    assert torch.equal(centre[0], plain[0])
    assert torch.equal(centre[1], plain[1].flip(2))
    shifted = make_batch(images, indices, mean, std, torch.tensor([[8, 4], [4, 0], [0, 0]]))
    assert torch.equal(shifted[0, :, :-4, :], plain[0, :, 4:, :])  # dy=8: the crop starts four rows lower
    assert torch.equal(shifted[1, :, :, 4:], plain[1, :, :, :-4])  # dx=0: four columns of padding on the left


def test_crops_are_drawn_in_range_from_the_generator():
    crops = draw_crops(500, torch.Generator().manual_seed(0))
    assert crops.shape == (3, 500) and crops.dtype == torch.long
    assert crops[:2].min() == 0 and crops[:2].max() == 8 and set(crops[2].tolist()) == {0, 1}
    assert torch.equal(crops, draw_crops(500, torch.Generator().manual_seed(0)))


def test_the_dataset_is_loaded_once_per_process_and_trains_from_its_own_tensor_on_a_cpu(tiny_cfg):
    from learngene_ea.data import load_dataset

    dataset = load_dataset(tiny_cfg.data)
    assert load_dataset(tiny_cfg.data) is dataset
    assert training.images_on(dataset, "cpu") is dataset.images


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_on_a_gpu_the_images_are_copied_to_the_device_once(tiny_dataset):
    on_gpu = training.images_on(tiny_dataset, "cuda:0")
    assert on_gpu.device.type == "cuda" and torch.equal(on_gpu.cpu(), tiny_dataset.images)
    assert training.images_on(tiny_dataset, "cuda:0") is on_gpu


def gpu_synchronisations(work):
    """How many times ``work()`` makes the host wait for the GPU (CUDA's sync-debug warnings)."""
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with pytest.warns(UserWarning) as record:
            work()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    return len(record)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_on_a_gpu_training_synchronises_once_per_block_not_per_step(tiny_dataset):
    task = sample_task(tiny_dataset, 1, 5, 8)
    models = [build_model("conv4", 0.25, num_classes=5, seed=i, device="cuda") for i in range(3)]

    def train(steps):
        return lambda: train_stacked(models, tiny_dataset, [task] * 3, TrainSettings(steps, 16, 0.01), seeds=[0, 1, 2],
                                     device="cuda")

    train(1)()  # warm-up
    assert gpu_synchronisations(train(2)) == gpu_synchronisations(train(9))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_on_a_gpu_scoring_synchronises_as_often_for_two_episodes_as_for_six(tiny_dataset):
    model = build_model("conv4", 0.25, num_classes=5, seed=0, device="cuda")
    episodes = sample_episodes(tiny_dataset, 5, 6, 5, 3, 5, "val")

    def score(count):
        return lambda: (training.prototype_accuracies(model, tiny_dataset, episodes[:count], device="cuda"),
                        transfer.finetune_head_accuracies(model, tiny_dataset, episodes[:count], 3, device="cuda"))

    score(1)()  # warm-up
    assert gpu_synchronisations(score(2)) == gpu_synchronisations(score(6))
