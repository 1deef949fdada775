"""task.head_init: a descendant's head can start as its task's nearest-prototype classifier
(Proto-MAML's W = 2c, b = -|c|^2) instead of at random (a variant of #37 that lost on validation
classes; the default stays random)."""
import numpy as np
import torch

from conftest import tiny_overrides
from learngene_ea.config.loading import load_config
from learngene_ea.core.individual import make_individual
from learngene_ea.core.learngene import extract_learngene, full_masks
from learngene_ea.core.models import arch_spec, build_model
from learngene_ea.ea.fitness import evaluate, inflate_descendant
from learngene_ea.fewshot.sampling import sample_task
from learngene_ea.fewshot.training import features_of, prototype_head


def _whole_network_individual(seed=0):
    spec = arch_spec("conv4", 0.25)
    ind = make_individual(spec, full_masks(spec), 1)
    ind.learngene = extract_learngene(build_model("conv4", 0.25, seed=seed), full_masks(spec))
    return ind


def test_a_prototype_head_ranks_classes_as_the_distance_to_their_prototypes(tiny_dataset):
    model = build_model("conv4", 0.25, num_classes=5, seed=0)
    task = sample_task(tiny_dataset, 3, 5, 8, "train")
    prototype_head(model, tiny_dataset, task, per_class=4)
    features = features_of(model, tiny_dataset, task.indices)
    picked = np.concatenate([task.indices[task.labels == k][:4] for k in range(5)])
    centroids = torch.stack([features_of(model, tiny_dataset, picked[4 * k:4 * k + 4]).mean(0) for k in range(5)])
    nearest = torch.cdist(features, centroids).argmin(1)
    with torch.no_grad():
        assert torch.equal(model.head(features).argmax(1), nearest)
        assert torch.allclose(model.head.weight, 2 * centroids, atol=1e-6)


def test_the_recipe_key_chooses_the_descendants_head(tiny_dataset):
    individual = _whole_network_individual()
    heads = {}
    for init in ("random", "prototypes"):
        cfg = load_config(None, tiny_overrides(**{"task.head_init": init}))
        model, task, _ = inflate_descendant(individual, cfg, tiny_dataset, 1, "cpu")
        heads[init] = model.head.weight.detach().clone()
    random_head = build_model("conv4", 0.25, num_classes=5, seed=0).head.weight  # a random head's scale
    assert not torch.equal(heads["random"], heads["prototypes"])
    assert heads["random"].abs().max() <= random_head.abs().max() * 1.01  # untouched: nn.Linear's init
    assert (heads["prototypes"] >= 0).all()  # twice a mean of ReLU features


def test_descendants_with_prototype_heads_are_evaluated_and_repeat():
    cfg = load_config(None, tiny_overrides(**{"task.head_init": "prototypes"}))
    first = evaluate(_whole_network_individual(), cfg)
    again = evaluate(_whole_network_individual(), cfg)
    assert first.fitness == again.fitness and 0.0 <= first.fitness[0] <= 1.0
