"""Tasks and episodes are reproducible from their seed; scoring reports mean and 95% CI."""
import math

import numpy as np
import pytest
import torch

from learngene_ea.fewshot.sampling import (mean_and_ci95, prototype_predict, sample_episode, sample_episodes,
                                           sample_task, t_quantile_975)


def test_task_uses_training_classes_only_and_is_reproducible(tiny_dataset):
    a = sample_task(tiny_dataset, seed=5, num_classes=6, images_per_class=4)
    b = sample_task(tiny_dataset, seed=5, num_classes=6, images_per_class=4)
    np.testing.assert_array_equal(a.indices, b.indices)
    assert set(a.class_ids) <= set(tiny_dataset.splits["train"])
    labels = tiny_dataset.labels[torch.as_tensor(a.indices)].numpy()
    assert set(labels) == set(a.class_ids)
    assert sorted(set(a.labels)) == list(range(6)) and len(a.indices) == 24
    c = sample_task(tiny_dataset, seed=6, num_classes=6, images_per_class=4)
    assert not np.array_equal(a.indices, c.indices)


@pytest.mark.parametrize("split", ["val", "test"])
def test_episode_is_reproducible_and_never_leaks_queries_into_support(tiny_dataset, split):
    e1 = sample_episode(tiny_dataset, seed=11, n_way=5, k_shot=3, n_query=4, split=split)
    e2 = sample_episode(tiny_dataset, seed=11, n_way=5, k_shot=3, n_query=4, split=split)
    np.testing.assert_array_equal(e1.support, e2.support)
    np.testing.assert_array_equal(e1.query, e2.query)
    assert not set(e1.support) & set(e1.query)
    assert set(e1.class_ids) <= set(tiny_dataset.splits[split])
    true = tiny_dataset.labels[torch.as_tensor(e1.query)].numpy()
    assert all(true[i] == e1.class_ids[label] for i, label in enumerate(e1.query_labels))
    assert len(e1.support) == 15 and len(e1.query) == 20


def test_episode_i_depends_only_on_seed_and_position(tiny_dataset):
    five = sample_episodes(tiny_dataset, 3, 5, 5, 1, 2)
    three = sample_episodes(tiny_dataset, 3, 3, 5, 1, 2)
    for a, b in zip(five, three):
        np.testing.assert_array_equal(a.query, b.query)


def test_ci95_formula_by_hand():
    accs = [0.5, 0.6, 0.7, 0.8]
    mean, ci = mean_and_ci95(accs)
    std = math.sqrt(sum((a - 0.65) ** 2 for a in accs) / 3)  # sample standard deviation
    assert mean == pytest.approx(0.65)
    assert ci == pytest.approx(3.182446305284263 * std / 2)  # Student's t, 3 degrees of freedom


@pytest.mark.parametrize("df, quantile", [(1, 12.706204736174707), (2, 4.302652729749464), (4, 2.776445105197793),
                                          (14, 2.1447866879178044), (29, 2.045229642132703),
                                          (44, 2.0153675744437627), (1000, 1.9623390808264078)])
def test_the_t_quantile_matches_published_values(df, quantile):
    # R: qt(0.975, df)
    assert t_quantile_975(df) == pytest.approx(quantile, abs=1e-9)


def test_an_interval_over_few_units_is_wider_than_the_normal_one():
    values = [0.4, 0.5, 0.6]
    _, ci = mean_and_ci95(values)
    assert ci == pytest.approx(4.302652729749464 * 0.1 / math.sqrt(3))
    assert ci > 1.96 * 0.1 / math.sqrt(3) * 2  # 1.96 would understate it more than twofold


def test_prototype_classifier_picks_the_nearest_centroid():
    support = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    labels = torch.tensor([0, 0, 1, 1])
    query = torch.tensor([[0.8, 0.2], [0.2, 0.7], [5.0, 0.1]])
    for metric in ("cosine", "euclidean"):
        pred = prototype_predict(support, labels, query, 2, metric)
        assert pred[:2].tolist() == [0, 1]


def old_prototypes(features, labels, n_way):
    """The class means as prototype_predict made them before it avoided index_add_ off the CPU."""
    sums = torch.zeros(n_way, features.shape[1]).index_add_(0, labels, features)
    counts = torch.zeros(n_way).index_add_(0, labels, torch.ones_like(labels, dtype=features.dtype))
    return sums / counts.clamp(min=1).unsqueeze(1)


def test_class_sums_on_a_cpu_are_index_adds_and_the_mask_form_agrees_with_them():
    """The CPU keeps its results bit for bit; the form used on GPUs (no atomics) gives the same sums
    to float rounding and the same predictions."""
    from learngene_ea.fewshot.sampling import class_sums, class_sums_by_mask

    generator = torch.Generator().manual_seed(0)
    for shots, dim in ((1, 8), (5, 64), (20, 640)):
        labels = torch.arange(5).repeat_interleave(shots)[torch.randperm(5 * shots, generator=generator)]
        features = torch.randn(5 * shots, dim, generator=generator)
        query = torch.randn(30, dim, generator=generator)
        old = torch.zeros(5, dim).index_add_(0, labels, features)
        assert torch.equal(class_sums(features, labels, 5), old)
        assert torch.allclose(class_sums_by_mask(features, labels, 5), old, rtol=1e-6, atol=1e-5)
        for metric in ("cosine", "euclidean"):
            prototypes = old_prototypes(torch.nn.functional.normalize(features, dim=1) if metric == "cosine"
                                        else features, labels, 5)
            if metric == "cosine":
                expected = (torch.nn.functional.normalize(query, dim=1)
                            @ torch.nn.functional.normalize(prototypes, dim=1).T).argmax(1)
            else:
                expected = (-torch.cdist(query, prototypes)).argmax(1)
            assert torch.equal(prototype_predict(features, labels, query, 5, metric), expected)


def test_off_the_cpu_prototypes_are_built_without_index_add(monkeypatch):
    """CUDA's index_add_ adds with atomics (results change from run to run); tried on torch's meta device."""
    def refuse(*args, **kwargs):
        raise AssertionError("index_add_ used off the CPU")

    monkeypatch.setattr(torch.Tensor, "index_add_", refuse)
    support, labels = torch.randn(10, 16, device="meta"), torch.zeros(10, dtype=torch.long, device="meta")
    for metric in ("cosine", "euclidean"):
        assert prototype_predict(support, labels, torch.randn(4, 16, device="meta"), 5, metric).shape == (4,)
