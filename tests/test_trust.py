"""Code is imported only from what the user's own command names (README, "Trust model"): a checkpoint's
saved config, a run folder's config.yaml and a learngene's family never import a module or an
operator by themselves."""
import os
import shutil

import pytest
import torch
import yaml

from conftest import ROOT, run_module
from learngene_ea.config.trust import admit_code, code_names, user_code
from learngene_ea.errors import UserError
from learngene_ea.io.checkpoint import checkpoint_files, dumps_checkpoint, load_checkpoint


def tampered_run(serial_run_dir, tmp_path, change):
    """A copy of the tiny run whose newest checkpoint's config went through ``change`` (checksum recomputed)."""
    run_dir = tmp_path / "handed"
    shutil.copytree(serial_run_dir, run_dir)
    newest = checkpoint_files(run_dir)[0]
    payload = load_checkpoint(newest)
    change(payload["config"])
    with open(newest, "wb") as f:
        f.write(dumps_checkpoint(payload))
    return run_dir


def touching(marker):
    return {"function": "subprocess:call", "kwargs": {"args": ["touch", str(marker)]}}


def test_a_checkpoint_naming_a_module_is_refused_on_resume_before_it_is_imported(serial_run_dir, tmp_path):
    marker = tmp_path / "MARKER"

    def evil_model(config):
        config["model"] = {"family": "conv4", "module": "subprocess:call", "width": 1.0,
                           "kwargs": {"args": ["touch", str(marker)]}}

    run_dir = tampered_run(serial_run_dir, tmp_path, evil_model)
    result = run_module(["-m", "learngene_ea.run", "--resume", str(run_dir), "--set", "ea.generations=5"], cwd=ROOT)
    assert result.returncode == 2, result.stderr
    assert not marker.exists()
    assert "names model.module 'subprocess:call'" in result.stderr
    assert "--trust-module subprocess:call" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_checkpoint_naming_an_operator_is_refused_on_resume(serial_run_dir, tmp_path):
    from learngene_ea.cli import run as run_cli

    marker = tmp_path / "MARKER"
    run_dir = tampered_run(serial_run_dir, tmp_path,
                           lambda config: config["operators"].update(mutate=touching(marker)))
    with pytest.raises(UserError, match="names operators.mutate.function 'subprocess:call'"):
        run_cli.run(run_cli.parse_args(["--resume", str(run_dir), "--set", "ea.generations=5", "--quiet"]))
    assert not marker.exists()


def test_the_users_own_word_admits_the_code_a_checkpoint_names(serial_run_dir, tmp_path):
    from learngene_ea.cli import run as run_cli

    name = "learngene_ea.examples:mut_shrink_contiguous"
    run_dir = tampered_run(serial_run_dir, tmp_path,
                           lambda config: config["operators"].update(mutate={"function": name, "kwargs": {}}))
    resume = ["--resume", str(run_dir), "--set", "ea.generations=3", "--quiet"]
    with pytest.raises(UserError, match="--trust-module"):
        run_cli.run(run_cli.parse_args(resume))
    assert run_cli.main([*resume, "--trust-module", name]) == 0
    assert load_checkpoint(checkpoint_files(run_dir)[0])["generation"] == 3


def test_what_the_command_names_is_trusted_and_the_rest_is_not():
    handed = {"model": {"module": "lab:net", "family": "conv4"},
              "operators": {"select": {"function": "deap.tools:selBest"}, "mutate": None}}
    assert code_names(handed) == {"model.module": "lab:net", "operators.select.function": "deap.tools:selBest"}
    assert code_names({"model": {"family": 'module:lab:net{"k": 1}'}}) == {"model.family": "lab:net"}
    trusted = user_code({"model": {"module": "lab:net"}}, ["operators.select={function: 'deap.tools:selBest'}"])
    admit_code(handed, trusted, "checkpoint 'x'")
    with pytest.raises(UserError, match="names operators.select.function 'deap.tools:selBest'"):
        admit_code(handed, user_code({"model": {"module": "lab:net"}}), "checkpoint 'x'")


def test_a_run_folders_config_never_imports_the_module_a_handed_learngene_names(serial_run_dir, tmp_path):
    marker = tmp_path / "MARKER"
    folder = tmp_path / "handed"
    folder.mkdir()
    with open(serial_run_dir / "config.yaml", encoding="utf-8") as f:
        config = yaml.safe_load(f)
    config["model"] = {"family": "conv4", "module": "subprocess:call", "width": 1.0,
                       "kwargs": {"args": ["touch", str(marker)]}}
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    state = torch.load(serial_run_dir / "learngene.pt", weights_only=True)
    state["family"] = 'module:subprocess:call{"args": ["touch", "%s"]}' % marker
    torch.save(state, folder / "learngene.pt")
    out = tmp_path / "out"
    result = run_module(["-m", "learngene_ea.transfer", "--learngene", str(folder / "learngene.pt"),
                         "--out", str(out), "--quiet"], cwd=str(tmp_path))
    assert result.returncode == 2, result.stderr
    assert not marker.exists()
    assert "config.yaml' names model.module 'subprocess:call'" in result.stderr
    assert not os.path.exists(out)
