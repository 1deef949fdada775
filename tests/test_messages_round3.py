"""Issue #36, round three: what a user hands in is checked before it is loaded or computed on, a write
the system refuses is one sentence naming the file, and every message is true (causes D11-D13, E16,
E17, F20; Ctrl-C under SCOOP, F19, is in test_scoop_launch.py)."""
import errno
import json
import logging
import os
import resource
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from conftest import ROOT, tiny_overrides, user_network_module
from learngene_ea.cli import run as run_cli
from learngene_ea.cli import transfer as transfer_cli
from learngene_ea.config.loading import load_config, save_config
from learngene_ea.core import traced
from learngene_ea.core.learngene import extract_learngene
from learngene_ea.core.models import build_model
from learngene_ea.errors import UserError, WriteError
from learngene_ea.transfer.pretrain import given_pretrained


def sets(overrides):
    return [a for o in overrides for a in ("--set", o)]


def conv4_state():
    return build_model("conv4", 0.25, 3, 5, seed=0).state_dict()


def saved(tmp_path, state, name="net.pt"):
    path = tmp_path / name
    torch.save(state, path)
    return str(path)


def first_conv(state):
    return next(k for k, v in state.items() if v.dim() == 4)


def save_learngene(path, family="conv4", width=0.25):
    model = build_model(family, width, 3, 5, seed=1)
    learngene = extract_learngene(model, {g: np.ones(size, dtype=bool) for g, size in model.spec.groups})
    learngene.save(path)
    return learngene


# --- D11: a state dict is checked against the network before it is loaded ------------------------------

def _bad_head_bias(state):
    state["head.bias"] = torch.zeros(7)  # a head of 5 classes


def _meta(state):
    state.update({k: v.to("meta") for k, v in state.items()})


def _sparse(state):
    state[first_conv(state)] = state[first_conv(state)].to_sparse()


def _int_key(state):
    state[5] = torch.zeros(1)


def _integers(state):
    state[first_conv(state)] = state[first_conv(state)].long()  # every weight rounded to 0


@pytest.mark.parametrize("damage, message", [
    (_bad_head_bias, "has a 'head.bias' of shape [7] for a 'head.weight' of 5 classes"),
    (_meta, "that is a meta tensor (a shape without values)"),
    (_sparse, "that is a sparse_coo tensor, not a dense one"),
    (_int_key, "has a key that is not a tensor's name (5)"),
    (_integers, "holds int64 values, not float32"),
])
def test_a_state_dict_that_cannot_be_loaded_is_refused_in_one_sentence(tmp_path, damage, message):
    state = conv4_state()
    damage(state)
    with pytest.raises(UserError) as err:
        given_pretrained(saved(tmp_path, state), "conv4", 0.25, 3, "cpu")
    assert message in str(err.value) and "pass the state dict of a conv4 network" in str(err.value)


def test_from_pretrained_with_a_head_bias_of_the_wrong_shape_exits_2(tmp_path, capsys):
    state = conv4_state()
    _bad_head_bias(state)
    argv = ["--from-pretrained", saved(tmp_path, state), "--run-dir", str(tmp_path / "run"), "--quiet",
            *sets(tiny_overrides(**{"fitness.inheritance": "pool"}))]
    assert run_cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --from-pretrained") and "'head.bias'" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_transfer_pretrained_with_a_meta_state_dict_exits_2(tmp_path, capsys):
    save_learngene(tmp_path / "learngene.pt")
    state = conv4_state()
    _meta(state)
    argv = ["--learngene", str(tmp_path / "learngene.pt"), "--pretrained", saved(tmp_path, state), "--quiet",
            "--out", str(tmp_path / "out"), *sets(tiny_overrides())]
    assert transfer_cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --pretrained") and "meta tensor" in err and "Traceback" not in err


@pytest.mark.parametrize("make, problem", [(os.mkdir, "is a folder, not a file"),
                                           (os.mkfifo, "is a fifo (named pipe), not a regular file")])
def test_a_folder_or_fifo_as_state_dict_is_not_said_to_be_missing(tmp_path, make, problem):
    make(tmp_path / "net.pt")
    with pytest.raises(UserError) as err:
        given_pretrained(str(tmp_path / "net.pt"), "conv4", 0.25, 3, "cpu", "--from-pretrained")
    assert str(err.value).startswith(f"--from-pretrained {str(tmp_path / 'net.pt')!r} {problem}; pass the state dict")


# --- D12: a write the system refuses -------------------------------------------------------------------

def test_a_refused_write_names_the_file_keeps_the_old_one_and_leaves_no_temporary(tmp_path, monkeypatch):
    from learngene_ea.io import atomic

    path = tmp_path / "summary.json"
    path.write_text("old")

    def full_disk(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic.os, "fsync", full_disk)
    with pytest.raises(WriteError) as err:
        atomic.atomic_write_bytes(path, b"new")
    assert str(err.value) == (f"cannot write {str(path)!r} (No space left on device); free space on its disk, or "
                              "write elsewhere; the files written before are kept.")
    assert err.value.exit_code == 1 and isinstance(err.value, OSError)  # a cache that tolerates OSError still does
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["summary.json"]


def test_a_run_over_the_file_size_limit_says_which_file_and_exits_1(tmp_path):
    """``ulimit -f 200``: the first checkpoint is larger than 200 KiB; start.pkl, written before, is kept."""
    run_dir = tmp_path / "run"
    limit = 200 * 1024

    def limited():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS="1")
    args = [sys.executable, "-m", "learngene_ea.run", "--run-dir", str(run_dir), "--quiet",
            *sets(tiny_overrides(**{"runtime.backend": "serial", "model.width": 0.5}))]
    done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
                          preexec_fn=limited)
    assert done.returncode == 1, done.stderr[-3000:]
    assert done.stderr.strip().splitlines() == [
        f"error: cannot write {str(run_dir / 'checkpoints' / 'gen_0000.pkl')!r} (File too large); raise the file "
        "size limit (ulimit -f), or write elsewhere; the files written before are kept."]
    assert (run_dir / "config.yaml").is_file() and (run_dir / "checkpoints" / "start.pkl").is_file()
    assert not [n for n in os.listdir(run_dir / "checkpoints") if n.endswith(".tmp")]


def test_a_run_folder_whose_lock_cannot_be_written_is_one_sentence(tmp_path, monkeypatch):
    from learngene_ea.io import lock

    def read_only(path, *args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(lock.os, "open", read_only)
    with pytest.raises(WriteError, match=r"cannot write '.*\.lock' \(Permission denied\); make its folder writable"):
        with lock.run_folder_lock(str(tmp_path)):
            pass


def test_a_run_directory_on_a_full_disk_is_the_environments_failure(tmp_path, monkeypatch):
    from learngene_ea.api import run as api_run

    def full_disk(path, exist_ok=False):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(api_run.os, "makedirs", full_disk)
    with pytest.raises(WriteError) as err:
        api_run.make_run_dir(str(tmp_path / "run"))
    assert err.value.exit_code == 1 and "No space left on device" in str(err.value)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only folder")
def test_resuming_a_read_only_run_folder_exits_1_naming_it(serial_run_dir, tmp_path, capsys):
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(serial_run_dir, run_dir)
    os.remove(run_dir / ".lock")
    os.chmod(run_dir, 0o555)
    try:
        assert run_cli.main(["--resume", str(run_dir), "--set", "ea.generations=5", "--quiet"]) == 1
    finally:
        os.chmod(run_dir, 0o755)
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot write '{run_dir}") and "Traceback" not in err


# --- D13: probing a network's image size is quiet ------------------------------------------------------

CIFAR_NET = """
    import torch.nn as nn

    def net(num_classes=10):  # a classic CIFAR CNN: its Linear fits 32x32 images only
        return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                             nn.MaxPool2d(2), nn.Conv2d(8, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16),
                             nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(16 * 8 * 8, num_classes))

    def mlp(num_classes=10):
        return nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, num_classes))
"""


@pytest.fixture
def factories(tmp_path, monkeypatch):
    user_network_module(tmp_path, monkeypatch, "round3_nets", CIFAR_NET)
    yield tmp_path
    sys.modules.pop("round3_nets", None)


def test_a_network_that_rejects_the_probe_size_is_traced_without_a_traceback(factories, capfd, caplog):
    load_config(None, ["model.module=round3_nets:net"])
    with caplog.at_level(logging.DEBUG, logger="learngene_ea"):
        model = build_model("module:round3_nets:net", num_classes=5)
    assert len(model.spec.layers) == 2
    captured = capfd.readouterr()
    assert "Traceback" not in captured.err and "ShapeProp" not in captured.err
    assert any("Traceback" in record.getMessage() for record in caplog.records)  # what --debug shows


def test_debug_sends_the_packages_debug_log_to_stderr(monkeypatch):
    from learngene_ea.cli.common import debug_log

    logger = logging.getLogger("learngene_ea")
    monkeypatch.setattr(logger, "handlers", [])
    monkeypatch.setattr(logger, "level", logging.NOTSET)
    debug_log()
    assert logger.level == logging.DEBUG and len(logger.handlers) == 1


# --- E16, E17: a transfer that cannot end well stops before its compute --------------------------------

def _no_compute(monkeypatch):
    from learngene_ea.transfer import pipeline

    def fail(*args, **kwargs):
        raise AssertionError("computed before the check")

    monkeypatch.setattr(pipeline, "get_pretrained", fail)
    monkeypatch.setattr(pipeline, "episode_data", fail)


def test_a_transfer_whose_out_folder_is_not_writable_stops_before_computing(tmp_path, monkeypatch, capsys):
    from learngene_ea.io import paths

    save_learngene(tmp_path / "learngene.pt")
    _no_compute(monkeypatch)

    def read_only(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(paths.tempfile, "mkstemp", read_only)
    argv = ["--learngene", str(tmp_path / "learngene.pt"), "--quiet", *sets(tiny_overrides())]
    assert transfer_cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.strip() == (f"error: Cannot write the transfer reports into {str(tmp_path)!r} (Permission denied); "
                           "pass a writable --out folder.")


def test_writable_problem_probes_the_nearest_existing_folder(tmp_path):
    from learngene_ea.io.paths import writable_problem

    assert writable_problem(tmp_path / "new" / "deeper") is None
    assert not (tmp_path / "new").exists() and os.listdir(tmp_path) == []  # the probe is gone
    (tmp_path / "file").write_text("x")
    assert writable_problem(tmp_path / "file" / "out") == f"{str(tmp_path / 'file')!r} is a file, not a folder"


def test_a_learngene_whose_factory_now_traces_differently_stops_before_pretraining(factories, monkeypatch):
    from learngene_ea.transfer.pipeline import TransferOptions, run_transfer

    cfg = load_config(None, tiny_overrides(**{"model.module": "round3_nets:net", "model.width": 1.0}))
    save_learngene(factories / "learngene.pt", "module:round3_nets:net", 1.0)
    narrower = textwrap.dedent(CIFAR_NET).replace("Conv2d(8, 16", "Conv2d(8, 12").replace("16 * 8", "12 * 8")
    (factories / "round3_nets.py").write_text(narrower.replace("BatchNorm2d(16)", "BatchNorm2d(12)"))
    sys.modules.pop("round3_nets", None)
    monkeypatch.setattr(traced, "_TRACES", {})
    _no_compute(monkeypatch)
    with pytest.raises(UserError, match="traces differently here than when its learngene was saved"):
        run_transfer(cfg, str(factories / "learngene.pt"), str(factories / "out"), TransferOptions(write=False))


# --- F20: messages that are true -----------------------------------------------------------------------

FACTORIES = """
    import sys
    import torch.nn as nn

    CALLS = [0]

    def body(width):
        return nn.Sequential(nn.Conv2d(3, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
                             nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, 10))

    def growing():
        CALLS[0] += 1
        return body(8 * CALLS[0])

    def exiting():
        sys.exit(3)

    def steady(weights=None):
        return body(8)
"""


@pytest.fixture
def odd_factories(factories):
    (factories / "round3_odd.py").write_text(textwrap.dedent(FACTORIES))
    sys.modules.pop("round3_odd", None)
    yield factories
    sys.modules.pop("round3_odd", None)


@pytest.mark.parametrize("factory, message", [
    ("exiting", r"module:round3_odd:exiting\(\*\*\{\}\) called sys.exit\(3\); a network factory must return an "
                r"nn.Module, not exit."),
    ("growing", r"module:round3_odd:growing built another network on a later call than the one traced \(its "
                r"'0.weight' is \[16, 3, 3, 3\], traced as \[8, 3, 3, 3\]\); its factory must build the same network"),
])
def test_a_factory_that_exits_or_changes_between_calls_is_one_sentence(odd_factories, factory, message):
    load_config(None, [f"model.module=round3_odd:{factory}"])
    with pytest.raises(UserError, match=message):
        build_model(f"module:round3_odd:{factory}")


def test_a_factory_exiting_on_import_is_one_sentence(factories):
    (factories / "round3_exits.py").write_text("import sys\nsys.exit(3)\n")
    load_config(None, ["model.module=round3_exits:net"])
    with pytest.raises(UserError, match=r"model.module 'round3_exits:net' called sys.exit\(3\) when imported"):
        build_model("module:round3_exits:net")


def test_null_weights_download_nothing_and_named_ones_name_both_commands_flags(odd_factories):
    load_config(None, ["model.module=round3_odd:steady"])
    assert len(build_model('module:round3_odd:steady{"weights": null}').spec.layers) == 1
    with pytest.raises(UserError, match=r"would be downloaded; pass a trained network's state dict instead "
                                        r"\(run: --from-pretrained, transfer: --pretrained\)"):
        build_model('module:round3_odd:steady{"weights": "DEFAULT"}')


def test_a_network_without_convolutions_says_so_without_empty_parentheses(factories):
    load_config(None, ["model.module=round3_nets:mlp"])
    with pytest.raises(UserError) as err:
        build_model("module:round3_nets:mlp")
    assert "()" not in str(err.value)
    assert str(err.value).endswith("can put in a learngene (no nn.Conv2d module is called in its forward).")


def test_an_unreachable_target_never_advises_a_lower_min_channels_that_cannot_help():
    from learngene_ea.config.checks import check_target_reachable
    from learngene_ea.config.schema import ConfigError

    cfg = load_config(None, ["model.width=0.015625", "ea.min_channels=1"])  # conv4 with 1 channel per layer
    with pytest.raises(ConfigError) as err:
        check_target_reachable(cfg)
    assert "min_channels to" not in str(err.value) and "lower ea.min_channels" not in str(err.value)
    assert str(err.value).endswith("(mask groups of 1 channel) has fraction 1.000; widen the network (model.width) "
                                   "so that its mask groups have channels to drop.")


def test_class_folders_named_by_numbers_get_the_hint_to_quote_them(tmp_path):
    from PIL import Image

    from learngene_ea.data import load_dataset

    for c in range(6):
        (tmp_path / str(c)).mkdir()
        for i in range(2):
            Image.new("RGB", (8, 8), (40 * c, i, 0)).save(tmp_path / str(c) / f"{i}.png")
    cfg = load_config(None, ["data.name=imagefolder", f"data.root={tmp_path}", "data.image_size=8",
                             "data.split={train: [0, 1, 2], val: [3], test: [4, 5]}"])
    with pytest.raises(UserError, match=r"data.split.train is \[0, 1, 2\]; it must be a list of class names \(YAML "
                                        r"reads 0 as a number: quote class names that look like numbers"):
        load_dataset(cfg.data)


def test_a_finished_study_seed_with_a_damaged_learngene_names_its_folder_and_how_to_redo_it(tmp_path):
    from learngene_ea.api.study import STUDY_CONFIG, check_study, seed_config

    cfg = load_config(None, tiny_overrides())
    out, folder = tmp_path / "study", tmp_path / "study" / "seed-0"
    folder.mkdir(parents=True)
    save_config(cfg, out / STUDY_CONFIG)
    save_config(seed_config(cfg, 0), folder / "config.yaml")
    (folder / "summary.json").write_text(json.dumps({"finished": True}))
    (folder / "learngene.pt").write_bytes(b"half a learngene")
    with pytest.raises(UserError) as err:
        check_study(cfg, [0], str(out))
    assert str(err.value).startswith(f"seed folder {str(folder)!r} is finished but its learngene.pt is damaged (")
    assert str(err.value).endswith("); delete that seed folder and rerun the study to evolve the seed again.")
