"""Issue #36, round three of bad inputs: each is refused (or warned about) in one sentence before any
compute is spent or any folder made, or handled so that what is recorded is what ran."""
import os

import pytest
import torch
from torch import nn

import learngene_ea as lg
from conftest import tiny_overrides
from learngene_ea.cli import run as run_cli
from learngene_ea.config.loading import load_config, save_config
from learngene_ea.config.schema import ConfigError
from learngene_ea.core import models, traced
from learngene_ea.core.models import build_model
from learngene_ea.core.tracing import TracingError, trace
from learngene_ea.errors import UserError


def cli_args(run_dir, *sets, **overrides):
    values = tiny_overrides(**{"runtime.backend": "serial", **overrides})
    return ["--run-dir", str(run_dir), "--quiet"] + [a for v in [*values, *sets] for a in ("--set", v)]


def refused(capsys, argv, *words, run_dir=None):
    """``argv`` exits 2 with one line on stderr holding ``words``, and makes no ``run_dir``."""
    assert run_cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert all(word in err for word in words), err
    assert run_dir is None or not os.path.exists(run_dir)
    return err


# ------------------------------------------------------------------ C4: a conv module called twice

class SharedConv(nn.Module):
    """``self.b = self.a``: two names, one module, one weight."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1, bias=False)
        self.a = nn.Conv2d(4, 4, 3, padding=1, bias=False)
        self.b = self.a
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(self.b(self.a(self.stem(x))).mean((2, 3)))


class ConvTwice(nn.Module):
    """One conv applied twice in forward."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1, bias=False)
        self.body = nn.Conv2d(4, 4, 3, padding=1, bias=False)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        x = self.stem(x).relu()
        return self.fc(self.body(self.body(x).relu()).mean((2, 3)))


class SharedNorm(nn.Module):
    """One BatchNorm after two convs."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1, bias=False)
        self.body = nn.Conv2d(4, 4, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(self.bn(self.body(self.bn(self.stem(x)).relu())).mean((2, 3)))


def conv_twice():
    return ConvTwice()


@pytest.mark.parametrize("net,name", [(SharedConv, "a"), (ConvTwice, "body"), (SharedNorm, "bn")])
def test_a_conv_called_twice_is_refused_naming_it(net, name):
    with pytest.raises(TracingError, match=f"its module '{name}' is called 2 times in forward"):
        trace(net(), 3, image_size=8)


def test_a_factory_whose_conv_is_called_twice_exits_2_before_the_run_folder(tmp_path, capsys):
    run_dir = tmp_path / "run"
    refused(capsys, cli_args(run_dir, "model.module=test_inputs_round3:conv_twice", **{"model.width": 1.0}),
            "'body' is called 2 times", run_dir=run_dir)


# ------------------------------------------------------------------ C5: state dicts that load wrongly

def _damaged(state, problem):
    if problem == "int64":
        return {k: v.to(torch.int64) if v.is_floating_point() else v for k, v in state.items()}
    if problem == "complex":
        return {k: v.to(torch.complex64) if v.is_floating_point() else v for k, v in state.items()}
    bn = next(k for k in state if k.endswith("running_var"))
    return {**state, bn: torch.full_like(state[bn], -1.0)}


@pytest.mark.parametrize("problem,words", [("int64", "holds int64 values, not float32"),
                                           ("complex", "holds complex64 values"),
                                           ("running_var", "negative or NaN variance")])
def test_from_pretrained_refuses_a_state_dict_that_would_load_wrongly(tmp_path, capsys, problem, words):
    state = build_model("conv4", 0.25, 3, 5, seed=0).state_dict()
    torch.save(_damaged(state, problem), tmp_path / "net.pt")
    run_dir = tmp_path / "run"
    args = cli_args(run_dir, "fitness.inheritance=pool") + ["--from-pretrained", str(tmp_path / "net.pt")]
    refused(capsys, args, "--from-pretrained", words, run_dir=run_dir)


# ------------------------------------------------------------------ C6: the cache key sees the structure

class EditedNet(nn.Module):
    """A user's factory as it is edited: its width or its forward changes, its name does not."""

    width, activate = 4, False

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, self.width, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(self.width)
        self.fc = nn.Linear(self.width, 2)

    def forward(self, x):
        x = self.bn(self.conv(x))
        return self.fc((x.relu() if self.activate else x).mean((2, 3)))


def edited_net():
    return EditedNet()


def test_the_pretrained_cache_key_changes_when_the_factory_behind_a_name_changes(monkeypatch):
    from learngene_ea.transfer.pretrain import pretrain_key

    family = "module:test_inputs_round3:edited_net"
    monkeypatch.setattr(traced, "_ALLOWED_MODULES", {"test_inputs_round3:edited_net"})
    cfg = load_config(None, tiny_overrides())

    def key(**edit):
        for name, value in edit.items():
            monkeypatch.setattr(EditedNet, name, value)
        monkeypatch.setattr(traced, "_TRACES", {})  # a new process would trace the edited factory afresh
        monkeypatch.setattr(models, "_SPEC_CACHE", {})
        return pretrain_key(cfg, family, 1.0, 3, 10)

    first = key()
    assert key() == first  # the same factory: the cache is reused
    assert key(activate=True) != first  # another forward, the same tensors
    assert key(activate=False, width=6) != first  # another width: no more 'size mismatch' traceback


# ------------------------------------------------------------------ C7: data.split on a dataset with its own

def test_data_split_on_the_synthetic_dataset_is_refused(tmp_path, capsys):
    run_dir = tmp_path / "run"
    refused(capsys, cli_args(run_dir, "data.split={train: 2, val: 2, test: 96}"), "'data.split'", "synthetic",
            run_dir=run_dir)


# ------------------------------------------------------------------ C8: keys a resumed run cannot change

@pytest.mark.parametrize("override,key", [("ea.population_size=6", "ea.population_size is 4"),
                                          ("seed=3", "seed is 0"), ("task.steps=9", "task.steps is 4")])
def test_resume_refuses_an_override_that_cannot_change_in_the_middle_of_a_run(serial_run_dir, capsys, override,
                                                                              key):
    before = sorted(os.listdir(serial_run_dir / "checkpoints"))
    config = (serial_run_dir / "config.yaml").read_text()
    refused(capsys, ["--resume", str(serial_run_dir), "--set", override, "--quiet"], key, "in the checkpoint",
            "start a new run")
    assert sorted(os.listdir(serial_run_dir / "checkpoints")) == before
    assert (serial_run_dir / "config.yaml").read_text() == config


def test_resume_still_takes_what_may_change(serial_run_dir):
    from learngene_ea.api.run import resumed

    start = resumed(str(serial_run_dir), ["ea.generations=5", "runtime.threads=2", "transfer.episodes=3",
                                          "fitness.rescore_episodes=0"], log=lambda *a: None)
    assert (start.config.ea.generations, start.config.runtime.threads) == (5, 2)


# ------------------------------------------------------------------ C9, E18: a study's seeds and folders

@pytest.mark.parametrize("seeds,error,words", [
    ("012", TypeError, "seeds must be a list"), ([0, 0], UserError, "seed 0 is given twice"),
    ([-1], UserError, "seed -1 is out of range"), ([0.5], TypeError, "0.5 is a float"),
    ([True], TypeError, "True is a bool"), ([], UserError, "no seeds given"), (range(2), TypeError, "range")])
def test_run_study_checks_its_seeds_before_the_study_folder_exists(tiny_cfg, tmp_path, seeds, error, words):
    with pytest.raises(error, match=words):
        lg.run_study(tiny_cfg, seeds, str(tmp_path / "study"))
    assert not (tmp_path / "study").exists()


def test_a_file_in_place_of_a_seed_folder_is_refused_before_any_seed_is_evolved(tiny_cfg, tmp_path):
    from learngene_ea.api.study import STUDY_CONFIG

    out = tmp_path / "study"
    out.mkdir()
    save_config(tiny_cfg, out / STUDY_CONFIG)
    (out / "seed-1").write_text("not a folder")
    with pytest.raises(UserError, match="seed-1' is a file where the seed's run folder goes") as err:
        lg.run_study(tiny_cfg, [0, 1], str(out))
    assert "--run-dir" not in str(err.value)
    assert sorted(os.listdir(out)) == sorted([STUDY_CONFIG, "seed-1"])


# ------------------------------------------------------------------ C10: keys that do nothing

@pytest.mark.parametrize("override,words", [
    ("transfer.pretrain_on=target", "'transfer.target' is null"),
    ("transfer.shots=[1, 1]", "'transfer.shots' lists 1 more than once"),
])
def test_transfer_keys_that_would_do_nothing_are_refused(override, words):
    with pytest.raises(ConfigError, match=words):
        load_config(None, [override])


def test_pool_keys_without_a_gene_pool_are_warned_about_in_one_line():
    from learngene_ea.config.checks import silent_caps

    lamarckian = load_config(None, tiny_overrides(**{"fitness.inheritance": "lamarckian", "pool.step": 0.5,
                                                     "pool.score_decay": 0.1}))
    [line] = silent_caps(lamarckian)
    assert "'pool.step', 'pool.score_decay' set" in line and "no gene pool" in line
    assert silent_caps(load_config(None, tiny_overrides(**{"fitness.inheritance": "pool", "pool.step": 0.5}))) == []
    assert silent_caps(load_config(None, tiny_overrides(**{"fitness.inheritance": "lamarckian"}))) == []


# ------------------------------------------------------------------ D14: the Python API's argument types

def test_the_api_refuses_wrong_types_naming_what_it_expects(tiny_cfg, tmp_path):
    run_dir = tmp_path / "run"
    with pytest.raises(TypeError, match="expected a Config from load_config"):
        lg.evolve_run("genomes/default.yaml", str(run_dir))
    with pytest.raises(TypeError, match="load_config takes a recipe's path"):
        lg.load_config(tiny_cfg)
    with pytest.raises(TypeError, match="list of 'section.key=value' strings"):
        lg.load_config(None, "ea.generations=1")
    with pytest.raises(TypeError, match="run folder or checkpoint to resume must be a path"):
        lg.resume_run(tiny_cfg)
    with pytest.raises(TypeError, match="list of 'section.key=value' strings"):
        lg.resume_run(str(tmp_path), "ea.generations=3")
    with pytest.raises(TypeError, match="learngene must be a path"):
        lg.evaluate_learngene(tiny_cfg, 12)
    with pytest.raises(TypeError, match="expected a Config"):
        lg.evaluate_learngene(str(tmp_path / "learngene.pt"), tiny_cfg)
    with pytest.raises(TypeError, match="expected a Config"):
        lg.run_study({"seed": 0}, [0], str(tmp_path / "study"))
    assert not run_dir.exists() and not (tmp_path / "study").exists()


def test_a_config_changed_after_loading_is_checked_again(tiny_cfg, tmp_path):
    tiny_cfg.ea.population_size = -5
    with pytest.raises(ConfigError, match="'ea.population_size' is -5"):
        lg.evolve_run(tiny_cfg, str(tmp_path / "run"))
    with pytest.raises(ConfigError, match="'ea.population_size' is -5"):
        lg.run_study(tiny_cfg, [0], str(tmp_path / "study"))
    assert not (tmp_path / "run").exists() and not (tmp_path / "study").exists()
