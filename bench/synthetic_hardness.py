"""How hard is the built-in synthetic dataset? A few minutes on two CPU cores.

Measures, on the validation classes of ``make_synthetic()`` (``--split test`` for the test
classes; tuning the dataset on them would leak them into every result reported on them):
  1. the time to generate the default dataset (100 classes x 600 images, 32x32);
  2. a Conv4 trained from scratch on each N-way K-shot support set, scored on its query set;
  3. a Conv4 pre-trained on the 64 training classes, used frozen as a feature extractor with a
     prototype (cosine nearest-centroid) classifier.
Both for 5-way 5-shot and 5-way 1-shot. The dataset is meant to leave the scratch learner far
below the ceiling (about 35-55% in 5-shot) while pre-trained features clearly transfer (about
60-85% in 5-shot): few-shot methods then have room to show a difference.

    python bench/synthetic_hardness.py            # full measurement (about 3-5 minutes)
    python bench/synthetic_hardness.py --quick    # smoke run (well under a minute)
    python bench/synthetic_hardness.py --folder DIR --pretrain-epochs 15 --pretrain-per-class 60
                                                  # an image folder instead (e.g. bench.make_texture_folder's)
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from learngene_ea.data.synthetic import make_synthetic  # noqa: E402
from learngene_ea.fewshot.sampling import mean_and_ci95  # noqa: E402


class Conv4(nn.Module):
    """Four blocks of conv3x3-BN-ReLU-maxpool; features are the flattened last map."""

    def __init__(self, width: int = 32, num_classes: int = 0):
        super().__init__()
        layers, channels = [], 3
        for _ in range(4):
            layers += [nn.Conv2d(channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
                       nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            channels = width
        self.features = nn.Sequential(*layers, nn.Flatten())
        self.feature_dim = width * 2 * 2  # 32x32 input -> 2x2 map
        self.head = nn.Linear(self.feature_dim, num_classes) if num_classes else None

    def forward(self, x):
        return self.head(self.features(x))


def normalise(images: torch.Tensor, ds) -> torch.Tensor:
    mean = torch.tensor(ds.mean).view(1, 3, 1, 1)
    std = torch.tensor(ds.std).view(1, 3, 1, 1)
    return (images.float() / 255.0 - mean) / std


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random horizontal flip and random 4-pixel-padded crop (the usual CIFAR augmentation)."""
    n, _, h, w = x.shape
    flip = torch.rand(n, generator=gen) < 0.5
    x = torch.where(flip.view(n, 1, 1, 1), x.flip(3), x)
    padded = F.pad(x, (4, 4, 4, 4), mode="reflect")
    dy, dx = torch.randint(0, 9, (2,), generator=gen).tolist()  # one shift per batch: cheap
    return padded[:, :, dy:dy + h, dx:dx + w]


def sample_episode(ds, split: str, ways: int, shots: int, queries: int, rng):
    """Indices and episode labels of the support and query sets of one episode."""
    classes = rng.choice(ds.splits[split], ways, replace=False)
    support, query = [], []
    for label, cls in enumerate(classes):
        idx = ds.indices_of_class(int(cls)).numpy()
        pick = rng.choice(idx, shots + queries, replace=False)
        support += [(i, label) for i in pick[:shots]]
        query += [(i, label) for i in pick[shots:]]
    s_idx, s_lab = (torch.tensor(v) for v in zip(*support))
    q_idx, q_lab = (torch.tensor(v) for v in zip(*query))
    return s_idx, s_lab, q_idx, q_lab


def scratch_episode(ds, episode, width: int, steps: int, seed: int) -> float:
    """Train a fresh Conv4 on the support set only; accuracy on the query set."""
    s_idx, s_lab, q_idx, q_lab = episode
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = Conv4(width, num_classes=int(s_lab.max()) + 1)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    xs = normalise(ds.images[s_idx], ds)
    model.train()
    for _ in range(steps):
        loss = F.cross_entropy(model(augment(xs, gen)), s_lab)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        pred = model(normalise(ds.images[q_idx], ds)).argmax(1)
    return float((pred == q_lab).float().mean())


def pretrain(ds, width: int, epochs: int, per_class: int, batch: int, seed: int) -> Conv4:
    """Train a Conv4 classifier on (a subset of) the training classes."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    train_classes = ds.splits["train"]
    idx = np.concatenate([rng.choice(ds.indices_of_class(c).numpy(), per_class, replace=False)
                          for c in train_classes])
    remap = torch.full((len(ds.class_names),), -1, dtype=torch.int64)
    remap[torch.tensor(train_classes)] = torch.arange(len(train_classes))
    images, labels = normalise(ds.images[idx], ds), remap[ds.labels[idx]]
    model = Conv4(width, num_classes=len(train_classes))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4,
                          nesterov=True)
    total = epochs * math.ceil(len(idx) / batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=total,
                                                pct_start=0.15)
    model.train()
    for epoch in range(epochs):
        order = torch.randperm(len(idx), generator=gen)
        correct = 0
        for start in range(0, len(idx), batch):
            b = order[start:start + batch]
            logits = model(augment(images[b], gen))
            loss = F.cross_entropy(logits, labels[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            correct += int((logits.argmax(1) == labels[b]).sum())
        print(f"  pre-train epoch {epoch + 1}/{epochs}: train accuracy {correct / len(idx):.3f}",
              flush=True)
    model.eval()
    return model


def prototype_episode(model: Conv4, ds, episode) -> float:
    """Cosine nearest-centroid accuracy of frozen features on one episode."""
    s_idx, s_lab, q_idx, q_lab = episode
    with torch.no_grad():
        fs = F.normalize(model.features(normalise(ds.images[s_idx], ds)), dim=1)
        fq = F.normalize(model.features(normalise(ds.images[q_idx], ds)), dim=1)
    ways = int(s_lab.max()) + 1
    protos = F.normalize(torch.stack([fs[s_lab == k].mean(0) for k in range(ways)]), dim=1)
    pred = (fq @ protos.T).argmax(1)
    return float((pred == q_lab).float().mean())


def load_folder(root: str):
    """An image folder, split 64/16/20 as a recipe's ``data.name: imagefolder`` splits it."""
    from learngene_ea.config.loading import load_config
    from learngene_ea.data import load_dataset

    cache = tempfile.mkdtemp(prefix="hardness-")
    return load_dataset(load_config(None, ["data.name=imagefolder", f"data.root={root}", f"data.cache_dir={cache}"]).data)


def mean_ci(values) -> tuple[float, float]:
    return mean_and_ci95(values)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0, help="dataset and episode seed")
    parser.add_argument("--width", type=int, default=32, help="Conv4 channels")
    parser.add_argument("--scratch-episodes", type=int, default=20)
    parser.add_argument("--scratch-steps", type=int, default=100)
    parser.add_argument("--proto-episodes", type=int, default=100)
    parser.add_argument("--pretrain-epochs", type=int, default=3)
    parser.add_argument("--pretrain-per-class", type=int, default=400,
                        help="training images per training class used for pre-training")
    parser.add_argument("--queries", type=int, default=15, help="query images per class")
    parser.add_argument("--split", default="val", choices=("val", "test"),
                        help="classes the episodes are drawn from (default: val; test only to report)")
    parser.add_argument("--images-per-class", type=int, default=600,
                        help="generate fewer images for quicker runs (default: the full dataset)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--quick", action="store_true", help="tiny smoke run")
    parser.add_argument("--folder", help="an image folder (one sub-folder per class) instead of the built-in data")
    args = parser.parse_args(argv)
    if args.quick:
        args.scratch_episodes, args.scratch_steps, args.proto_episodes = 3, 20, 10
        args.pretrain_epochs, args.pretrain_per_class = 1, 30
        args.images_per_class = min(args.images_per_class, 60)
    torch.set_num_threads(args.threads)

    # 1. generation time (first call in this process, so nothing is cached)
    wall, cpu = time.perf_counter(), time.process_time()
    ds = load_folder(args.folder) if args.folder else make_synthetic(seed=args.seed,
                                                                     images_per_class=args.images_per_class)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(f"generated {tuple(ds.images.shape)} in {wall:.2f} s wall ({cpu:.2f} s CPU); "
          f"mean {tuple(round(m, 3) for m in ds.mean)} std {tuple(round(s, 3) for s in ds.std)}",
          flush=True)

    rows = []
    for shots in (5, 1):
        # 2. scratch: a fresh Conv4 per episode, trained on the support set only
        t0 = time.perf_counter()
        rng = np.random.default_rng([args.seed, shots, 0])
        accs = [scratch_episode(ds, sample_episode(ds, args.split, 5, shots, args.queries, rng),
                                args.width, args.scratch_steps, seed=args.seed * 1000 + e)
                for e in range(args.scratch_episodes)]
        rows.append(("scratch Conv4", shots, *mean_ci(accs), len(accs),
                     time.perf_counter() - t0))
        print(f"  scratch 5-way {shots}-shot: {rows[-1][2]:.3f}", flush=True)

    # 3. pre-trained Conv4 + prototype classifier
    t0 = time.perf_counter()
    model = pretrain(ds, args.width, args.pretrain_epochs, args.pretrain_per_class, 128,
                     args.seed)
    t_pre = time.perf_counter() - t0
    for shots in (5, 1):
        t0 = time.perf_counter()
        rng = np.random.default_rng([args.seed, shots, 1])
        accs = [prototype_episode(model, ds,
                                  sample_episode(ds, args.split, 5, shots, args.queries, rng))
                for _ in range(args.proto_episodes)]
        rows.append(("pre-trained Conv4 + prototypes", shots, *mean_ci(accs), len(accs),
                     time.perf_counter() - t0 + (t_pre if shots == 5 else 0.0)))

    print()
    print(f"{args.folder or 'synthetic'} seed {args.seed}, {args.split} classes, Conv4 width {args.width}, "
          f"generation {wall:.2f} s")
    print(f"{'method':<32} {'task':<14} {'accuracy':>16} {'episodes':>9} {'time s':>8}")
    for name, shots, acc, ci, n, secs in rows:
        print(f"{name:<32} {f'5-way {shots}-shot':<14} {f'{100 * acc:.1f} +- {100 * ci:.1f}%':>16} "
              f"{n:>9} {secs:>8.1f}")


if __name__ == "__main__":
    main()
