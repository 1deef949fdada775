"""Downstream transfer: does a descendant that inherits the learngene learn unseen classes better?

``python -m learngene_ea.transfer --learngene runs/<name>/learngene.pt`` evaluates on *test*
classes (the recipe data's test split, or every class of ``transfer.target``, another dataset:
see ``target``), in three kinds of setting: N-way K-shot episodes for every ``transfer.shots`` value and
a "limited data" setting with ``transfer.limited_data`` support images per class. In every
episode each method starts from a fresh descendant, gets its transferred weights, a new N-way
head, fine-tunes on the support set and is scored on the query set. Methods (rows):

- ``scratch``: nothing transferred (random initialisation);
- ``scratch-instincts``: the same fresh network with no update (prototypes of its random
  features), since fine-tuning a random network on a few shots can do worse than that;
- ``pretrained``: the whole network of the recipe's family/width trained on all training
  classes of the source (the data the learngene was evolved on; ``transfer.pretrain_on:
  target`` for the target's) on as many training images as the whole evolution's descendants
  together (equal compute; cached by its key in the output folder), every gene layer
  transferred; ``--pretrained FILE`` gives that network instead;
- ``random-learngene``: random channels of the pre-trained network, as many per mask group as
  the learngene keeps (a new random choice per episode, seeded by the episode);
- ``l1-learngene``: the pre-trained network's channels with the largest filter L1 norm, as many
  per mask group as the learngene keeps (what plain magnitude pruning of the ancestry gives,
  with no evolution: the learngene must beat it to be worth evolving);
- ``slimming``: Network Slimming at equal compute: a network trained for the evolution's warm
  start, its channels of largest BatchNorm scale kept (as many per group as the learngene), that
  sub-network trained for the rest of the evolution's images, transferred like the learngene
  (``slimming``; left out when the learngene does not record its compute);
- ``layerwise``: whole gene layers of the pre-trained network from the input side, as many as
  come closest to the learngene's parameter count (the style of earlier learngene work), and
  ``layerwise-equal-size``: as many as fit within the learngene's parameters (when that differs);
- ``instincts``: the learngene descendant with no update at all (nearest-centroid on the
  support set, ``fitness.metric``);
- ``learngene``: the learngene written into the descendant;
- per ``--descendants`` item (``family@width``): ``scratch``, that architecture's own equal-compute
  ``pretrained`` and ``learngene`` rows (scalability; fresh channels by ``transfer.fresh_channels``).

Fairness: all methods see exactly the same episodes (support and query indices) and, per
episode, the same initialisation seed (so parts that are not transferred, and the head, are
bit-identical across methods of one architecture) and the same fine-tuning seed (batch order
and augmentation). Fine-tuning: ``transfer.steps`` steps of ``transfer.optimizer`` (SGD with
momentum 0.9, or Adam) at a constant ``transfer.lr``, weight decay ``transfer.weight_decay``,
batches of up to ``transfer.batch_size`` support images with light augmentation (random crop
with 4-pixel padding + horizontal flip; ``transfer.augment``), every parameter trained and
BatchNorm in training mode; the query set is scored in evaluation mode.

Defaults are sized for a CPU (20 episodes x 60 steps per setting); the
community standard is 600 episodes, e.g. ``--set transfer.episodes=600`` on a GPU. Under SCOOP
(``python -m scoop -n 8 -m learngene_ea.transfer ...``, or at the end of a run under SCOOP) every
(method, setting, episode) is one job for any process; the numbers are the same as in one process.
Outputs (atomic writes): ``transfer.json`` (every number), ``transfer.md`` (the table),
``transfer.png`` (bar chart with 95% CI error bars).

The package keeps one job per module, in the order of a transfer run: ``descendants`` (the
networks a learngene is written into), ``episodes`` (settings, episodes and their seeds),
``baselines`` (the rows), ``finetune`` (one row on one episode), ``cache`` (the pre-trained
networks' files, one per key), ``pretrain`` (the pre-trained network), ``report`` (paired
differences, table, chart, files), ``target`` (source and target data), ``slimming`` (the
``slimming`` row's network), ``jobs`` (every row on every setting, in one process or over
SCOOP) and ``pipeline`` (:func:`run_transfer`). Each imports only those before it, never this package;
the command line (``python -m learngene_ea.transfer``) is :mod:`learngene_ea.cli.transfer`.
"""
from __future__ import annotations

import importlib

# Where each name of __all__ lives; imported on first use (PEP 562), so that ``python -m learngene_ea.transfer
# --help`` reads its arguments before torch is imported.
_HOMES = {
    "..core.fresh": ("FreshStart",),
    "..core.learngene": ("load_learngene",),
    "..fewshot.training": ("finetune_head_accuracies",),
    ".baselines": ("Method", "baseline_methods", "layerwise_layers", "random_masks_like", "top_l1_masks_like"),
    ".descendants": ("build_descendant", "check_descendant", "copy_gene_layers", "parse_descendant",
                     "transferred_params"),
    ".episodes": ("Setting", "episode_digest", "make_settings"),
    ".finetune": ("Bench", "evaluate_episode", "evaluate_method", "finetune_and_score", "summarise_episodes"),
    ".jobs": ("EpisodeContext", "evaluate_episode_job", "evaluate_transfer", "share_transfer_context"),
    ".pipeline": ("TransferOptions", "run_transfer", "transfer_after_run"),
    ".pretrain": ("Arch", "PretrainSource", "given_pretrained", "load_or_pretrain", "pretrain_network"),
    ".slimming": ("bn_masks_like", "load_or_slim"),
    ".target": ("load_target", "match_channels", "source_data"),
    ".report": ("add_paired_differences", "markdown_table", "plot_transfer", "write_reports"),
}
_WHERE = {name: module for module, names in _HOMES.items() for name in names}
_SUBMODULES = {"baselines", "cache", "descendants", "episodes", "finetune", "front", "jobs", "pipeline", "pretrain",
               "report", "slimming", "target"}


def __getattr__(name):
    """A name of the package's API, or one of its modules, imported on first use."""
    if name in _WHERE:
        value = getattr(importlib.import_module(_WHERE[name], __name__), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value  # looked up once
    return value


def __dir__():
    return sorted({*globals(), *_WHERE, *_SUBMODULES})


__all__ = [
    "load_learngene", "FreshStart", "parse_descendant", "build_descendant", "check_descendant", "transferred_params",
    "copy_gene_layers", "layerwise_layers", "random_masks_like", "top_l1_masks_like", "Setting", "make_settings",
    "episode_digest", "Method", "baseline_methods", "Bench", "evaluate_episode", "summarise_episodes", "evaluate_method",
    "evaluate_transfer", "EpisodeContext", "share_transfer_context", "evaluate_episode_job", "add_paired_differences",
    "finetune_and_score", "finetune_head_accuracies", "pretrain_network", "load_or_pretrain", "Arch", "PretrainSource", "given_pretrained",
    "load_or_slim", "bn_masks_like",
    "load_target", "match_channels", "source_data", "run_transfer", "TransferOptions",
    "transfer_after_run", "markdown_table", "plot_transfer", "write_reports",
]
