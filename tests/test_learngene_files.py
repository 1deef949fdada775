"""A learngene file describes itself (what to feed a descendant, the rule its fresh channels start by, the
package that wrote it), converts to safetensors and back bit for bit, and ``python -m learngene_ea.inspect``
prints it as a model card."""
import numpy as np
import pytest

from learngene_ea.cli import inspect as inspect_cli
from learngene_ea.core.learngene import load_learngene


def test_a_runs_learngene_records_input_normalisation_network_fresh_rule_and_version(serial_run_dir):
    meta = load_learngene(serial_run_dir / "learngene.pt").meta
    assert meta["input"]["channels"] == 3 and meta["input"]["image_size"] == 32
    assert len(meta["input"]["normalise"]["mean"]) == 3 and len(meta["input"]["normalise"]["std"]) == 3
    assert meta["network"]["family"] == "conv4" and meta["network"]["width"] == 0.25
    assert meta["fresh_channels"] == {"rule": "grow", "complement_scale": 0.0}  # genomes/default.yaml's transfer
    assert meta["package_version"] not in ("", None)


def test_safetensors_round_trip_gives_identical_tensors_and_metadata(serial_run_dir, tmp_path):
    pytest.importorskip("safetensors")
    learngene = load_learngene(serial_run_dir / "learngene.pt")
    learngene.save(tmp_path / "learngene.safetensors")
    assert (tmp_path / "learngene.safetensors").read_bytes()[8:9] == b"{"  # a safetensors header, not a pickle
    again = load_learngene(tmp_path / "learngene.safetensors")
    assert (again.family, again.width, again.in_channels) == (learngene.family, learngene.width, learngene.in_channels)
    assert again.meta == learngene.meta
    assert all(np.array_equal(again.masks[g], learngene.masks[g]) and again.masks[g].dtype == bool
               for g in learngene.masks)
    assert all(np.array_equal(again.weights[layer][key], learngene.weights[layer][key])
               for layer in learngene.weights for key in learngene.weights[layer])
    again.save(tmp_path / "again.pt", format="pt")
    assert load_learngene(tmp_path / "again.pt").meta == learngene.meta


def test_inspect_prints_a_model_card_and_converts(serial_run_dir, tmp_path, capsys):
    pytest.importorskip("safetensors")
    out = tmp_path / "shared.safetensors"
    assert inspect_cli.main([str(serial_run_dir / "learngene.pt"), "--save-as", str(out)]) == 0
    card = capsys.readouterr().out
    assert card.startswith("# Learngene of conv4 (width 0.25)")
    for fact in ("normalised with mean [", "images of side 32", "channels of a descendant**: `grow`", "lg.load_learngene("):
        assert fact in card
    assert inspect_cli.main([str(out)]) == 0 and "(safetensors)" in capsys.readouterr().out


def test_inspect_of_a_file_that_is_not_a_learngene_is_one_sentence_and_exit_2(tmp_path, capsys):
    (tmp_path / "notes.pt").write_text("not a learngene")
    assert inspect_cli.main([str(tmp_path / "notes.pt")]) == 2
    assert capsys.readouterr().err.startswith("error: ")


def test_inspect_never_writes_over_a_file_the_user_has(serial_run_dir, tmp_path, capsys):
    mine = tmp_path / "mine.pt"
    mine.write_bytes(b"my own file")
    assert inspect_cli.main([str(serial_run_dir / "learngene.pt"), "--save-as", str(mine)]) == 2
    assert "already exists" in capsys.readouterr().err and mine.read_bytes() == b"my own file"
