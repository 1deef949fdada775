"""Any model in, any model out: a learngene read out of the ``nn.Module`` a user holds and written into one
they built (``lg.extract_learngene``, ``lg.inherit``), a torchvision network and a user's own class alike."""
import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from conftest import seeded_trained_like
import learngene_ea as lg
from learngene_ea.errors import UserError


class LabCNN(nn.Module):
    """A user's own network: two conv blocks, pooling, a linear classifier."""

    def __init__(self, width: int = 16, classes: int = 10):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, width, 3, padding=1, bias=False), nn.BatchNorm2d(width)
        self.conv2, self.bn2 = nn.Conv2d(width, 2 * width, 3, padding=1, bias=False), nn.BatchNorm2d(2 * width)
        self.fc = nn.Linear(2 * width, classes)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def test_the_four_functions_are_the_packages():
    assert all(callable(f) for f in (lg.extract_learngene, lg.inherit, lg.build_descendant, lg.load_learngene))


def test_a_learngene_from_a_users_own_module_keeps_its_largest_channels_and_leaves_it_unchanged(tmp_path):
    torch.manual_seed(0)
    model = seeded_trained_like(LabCNN(), 1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    learngene = lg.extract_learngene(model, 0.25)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the probe moved no statistic
    assert learngene.family == f"module:{LabCNN.__module__}:LabCNN"
    kept = learngene.masks
    assert {g: int(m.sum()) for g, m in kept.items()} == {g: round(0.5 * m.size) for g, m in kept.items()}
    l1 = model.conv1.weight.detach().abs().sum(dim=(1, 2, 3)).numpy()
    conv1_group = next(layer.group for layer in learngene.spec.layers if layer.name == "conv1")
    assert set(np.flatnonzero(kept[conv1_group])) == set(np.argsort(-l1)[:8])
    learngene.save(tmp_path / "learngene.pt")
    again = lg.load_learngene(tmp_path / "learngene.pt")
    assert all(np.array_equal(again.weights["conv2"][k], learngene.weights["conv2"][k])
               for k in learngene.weights["conv2"])


def test_inherit_writes_into_the_module_given_and_grow_starts_as_the_silent_sub_network():
    torch.manual_seed(0)
    learngene = lg.extract_learngene(seeded_trained_like(LabCNN(), 1), 0.25)
    images = torch.randn(4, 3, 16, 16)
    grown, silent = LabCNN(width=32, classes=5).eval(), LabCNN(width=32, classes=5).eval()
    silent.load_state_dict(grown.state_dict())
    assert lg.inherit(grown, learngene, fresh_channels="grow") is grown
    lg.inherit(silent, learngene, fresh_channels="scaled", complement_scale=0.0)
    assert torch.equal(grown(images), silent(images))  # twice as wide, and still its learngene's function
    out = np.flatnonzero(learngene.masks[next(layer.group for layer in learngene.spec.layers
                                              if layer.name == "conv1")])
    assert torch.equal(grown.conv1.weight[out].detach(), torch.from_numpy(learngene.weights["conv1"]["conv"]))


def test_a_torchvision_learngene_goes_into_a_deeper_torchvision_network():
    torch.manual_seed(0)
    source = seeded_trained_like(torchvision.models.resnet18(num_classes=10), 2)
    learngene = lg.extract_learngene(source, 0.25, criterion="bn")
    assert 0.1 < learngene.fraction < 0.4
    deeper = torchvision.models.resnet34(num_classes=5).eval()
    assert lg.inherit(deeper, learngene, fresh_channels="grow") is deeper
    assert torch.equal(deeper.conv1.weight[np.flatnonzero(learngene.masks[learngene.spec.layer("conv1").group])],
                       torch.from_numpy(learngene.weights["conv1"]["conv"]))
    assert deeper(torch.randn(2, 3, 32, 32)).shape == (2, 5)


def test_what_cannot_be_used_is_refused_in_one_sentence():
    model = LabCNN()
    with pytest.raises(TypeError, match="keep must be"):
        lg.extract_learngene(model, 1.5)
    with pytest.raises(TypeError, match="nn.Module"):
        lg.extract_learngene("resnet18", 0.5)
    with pytest.raises(UserError, match="groups"):
        lg.extract_learngene(model, {"no-such-group": np.ones(3, bool)})
    with pytest.raises(TypeError, match="Learngene"):
        lg.inherit(model, "learngene.pt")
