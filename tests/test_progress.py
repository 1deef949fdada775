"""Progress where a person waits: the gene pool's warm start and the transfer's pre-trainings show their
steps and loss on a bar from the command's bar factory (none under ``--quiet``), and the bar changes nothing."""
import numpy as np
import torch

from conftest import tiny_overrides
from learngene_ea.config.loading import load_config
from learngene_ea.ea import gene_pool
from learngene_ea.fewshot.training import StepProgress
from learngene_ea.transfer import pretrain


class RecordedBar:
    """What a tqdm bar was told."""

    def __init__(self, iterable, total, desc, unit):
        self.total, self.desc, self.unit = total, desc, unit
        self.n, self.postfix, self.closed = 0, {}, False

    def update(self, n=1):
        self.n += n

    def set_postfix(self, refresh=True, **values):
        self.postfix.update(values)

    def close(self):
        self.closed = True


def recording_factory(bars):
    def progress(iterable, total, desc, unit="descendant"):
        bars.append(RecordedBar(iterable, total, desc, unit))
        return bars[-1]

    return progress


def test_the_bar_moves_one_step_per_step_and_shows_the_loss_every_ten_steps():
    bar = RecordedBar(None, 25, "warm start", "step")
    seen = []
    observe = StepProgress(bar, then=lambda steps, loss: seen.append(steps))
    for step in range(1, 26):
        observe(step, torch.tensor([float(step)]))
        if step == 19:
            assert bar.postfix == {"loss": "10.000"}  # read at step 10, not at every step
    assert bar.n == 25 and seen == list(range(1, 26))  # the observer it wraps still sees every step
    assert bar.postfix == {"loss": "25.000"}  # and the last step's loss


def test_the_warm_start_shows_its_steps_and_trains_the_same_pool_as_without_a_bar():
    cfg = load_config("default", tiny_overrides(**{"pool.warm_start_fraction": 0.5}))
    steps = gene_pool.warm_start_images(cfg) // cfg.task.batch_size
    assert steps > 1
    bars = []
    shown = gene_pool.initial_pool(cfg, "cpu", progress=recording_factory(bars))
    quiet = gene_pool.initial_pool(cfg, "cpu")
    assert [(b.desc, b.unit, b.total, b.n, b.closed) for b in bars] == [("gene pool warm start", "step", steps, steps,
                                                                         True)]
    assert "loss" in bars[0].postfix
    shown_weights, quiet_weights = shown.learngene.weights, quiet.learngene.weights
    assert shown_weights.keys() == quiet_weights.keys()
    assert all(np.array_equal(shown_weights[layer][k], quiet_weights[layer][k])
               for layer in quiet_weights for k in quiet_weights[layer])
    assert shown.warm_start["final_loss"] == quiet.warm_start["final_loss"]


def test_the_pretrained_baseline_shows_its_steps(tiny_dataset, tmp_path):
    cfg = load_config(None, tiny_overrides(**{"transfer.pretrain_epochs": 1, "task.batch_size": 64,
                                              "runtime.device": "cpu"}))
    bars = []
    source = pretrain.PretrainSource(progress=recording_factory(bars))
    _, info = pretrain.load_or_pretrain(cfg, tiny_dataset, pretrain.Arch("conv4", 0.25, 3), str(tmp_path), "cpu",
                                        log=lambda *a: None, source=source)
    assert [(b.desc, b.unit, b.n, b.closed) for b in bars] == [("pre-trained baseline", "step", info["steps"], True)]
    pretrain.load_or_pretrain(cfg, tiny_dataset, pretrain.Arch("conv4", 0.25, 3), str(tmp_path), "cpu",
                              log=lambda *a: None, source=source)
    assert len(bars) == 1  # reused from the cache: nothing to wait for, no bar


def test_one_bar_factory_counts_in_the_callers_unit_unless_told_otherwise(capsys):
    from learngene_ea.reports.progress import tqdm_bars

    progress = tqdm_bars("episode")
    bar = progress(range(3), 3, "learngene [conv4 x0.5] 5-shot")
    assert list(bar) == [0, 1, 2] and bar.unit == "episode"
    steps = progress(None, 10, "pre-trained baseline", unit="step")
    steps.update(10)
    assert steps.unit == "step" and steps.n == 10
    steps.close()
    assert capsys.readouterr().out == ""  # bars go to stderr: stdout stays the table
