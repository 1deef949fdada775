"""Recipes are found by name from any folder, start from a ``base`` recipe, and read numbers and
booleans the way an ML user writes them; ``--print-config`` shows the result."""
import os

import pytest
import yaml

from conftest import ROOT
from learngene_ea.config.loading import config_yaml, load_config, to_dict
from learngene_ea.config.recipes import parse_yaml
from learngene_ea.config.schema import ConfigError

SHIPPED = os.path.join(ROOT, "genomes")


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


# ----------------------------------------------------------------------------- base

def test_a_recipe_takes_every_key_of_its_base_it_does_not_set(tmp_path):
    write(tmp_path / "base.yaml", "seed: 3\nea:\n  population_size: 6\n  generations: 2\n")
    child = write(tmp_path / "child.yaml", "base: base.yaml\nea:\n  generations: 5\n")
    cfg = load_config(child)
    assert (cfg.seed, cfg.ea.population_size, cfg.ea.generations) == (3, 6, 5)


def test_base_is_a_path_relative_to_the_recipe_not_to_the_working_folder(tmp_path, monkeypatch):
    (tmp_path / "recipes").mkdir()
    write(tmp_path / "recipes" / "base.yaml", "seed: 4\n")
    write(tmp_path / "base.yaml", "seed: 99\n")
    child = write(tmp_path / "recipes" / "child.yaml", "base: ./base.yaml\n")
    monkeypatch.chdir(tmp_path)
    assert load_config(child).seed == 4


def test_base_default_is_the_shipped_default_recipe(tmp_path):
    child = write(tmp_path / "child.yaml", "base: default\n")
    assert load_config(child) == load_config(os.path.join(SHIPPED, "default.yaml"))


def test_bases_chain(tmp_path):
    write(tmp_path / "a.yaml", "seed: 1\nea:\n  population_size: 6\n")
    write(tmp_path / "b.yaml", "base: a.yaml\nseed: 2\n")
    c = write(tmp_path / "c.yaml", "base: b.yaml\nea:\n  generations: 7\n")
    cfg = load_config(c)
    assert (cfg.seed, cfg.ea.population_size, cfg.ea.generations) == (2, 6, 7)


def test_a_mapping_of_free_keys_is_replaced_whole_not_merged(tmp_path):
    write(tmp_path / "base.yaml", "data:\n  split: {train: 0.6, val: 0.2, test: 0.2}\n")
    child = write(tmp_path / "child.yaml", "base: base.yaml\ndata:\n  split: {train: 10}\n")
    assert load_config(child).data.split == {"train": 10}


def test_overrides_apply_on_top_of_the_base(tmp_path):
    child = write(tmp_path / "child.yaml", "base: default\n")
    assert load_config(child, ["ea.generations=9"]).ea.generations == 9


def test_a_cycle_of_bases_is_refused_in_one_sentence(tmp_path):
    write(tmp_path / "a.yaml", "base: b.yaml\n")
    write(tmp_path / "b.yaml", "base: a.yaml\n")
    with pytest.raises(ConfigError, match=r"is its own base \(.*a\.yaml -> .*b\.yaml -> .*a\.yaml\)"):
        load_config(tmp_path / "a.yaml")


def test_a_missing_base_file_is_named(tmp_path):
    child = write(tmp_path / "child.yaml", "base: nowhere.yaml\n")
    with pytest.raises(ConfigError, match=r"has base 'nowhere.yaml', and .*nowhere.yaml' does not exist"):
        load_config(child)


def test_a_base_that_is_not_a_name_or_path_is_refused(tmp_path):
    child = write(tmp_path / "child.yaml", "base: [default]\n")
    with pytest.raises(ConfigError, match=r"has base \['default'\]; give a shipped recipe's name"):
        load_config(child)


def test_a_missing_base_ends_the_command_with_one_sentence_and_exit_code_2(tmp_path, capsys):
    from learngene_ea.cli import run as run_cli

    child = write(tmp_path / "child.yaml", "base: defualt\n")
    assert run_cli.main(["--config", str(child), "--print-config"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "has base 'defualt', which is neither a file nor a shipped recipe" in err
    assert "did you mean 'default'?" in err


# ----------------------------------------------------------------------------- names

def test_a_shipped_recipes_name_finds_it_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert load_config("cifarfs-vgg11") == load_config(os.path.join(SHIPPED, "cifarfs-vgg11.yaml"))


def test_an_existing_file_wins_over_a_shipped_name(tmp_path, monkeypatch):
    write(tmp_path / "default", "seed: 5\n")
    monkeypatch.chdir(tmp_path)
    assert load_config("default").seed == 5


def test_an_unknown_name_lists_the_shipped_recipes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"Recipe 'lamarkian' is neither a file nor a shipped recipe \(did you "
                                          r"mean 'lamarckian'\?\); .*: cifarfs-vgg11, .*default, "):
        load_config("lamarkian")


# ----------------------------------------------------------------------------- YAML scalars

def test_set_reads_an_exponent_float_as_a_number():
    assert load_config(None, ["task.lr=1e-3"]).task.lr == 0.001


def test_a_recipe_reads_exponent_floats_as_numbers(tmp_path):
    recipe = write(tmp_path / "r.yaml", "task:\n  lr: 5E-2\n  weight_decay: 1e-4\ntransfer:\n  lr: 1.e-2\n")
    cfg = load_config(recipe)
    assert (cfg.task.lr, cfg.task.weight_decay, cfg.transfer.lr) == (0.05, 0.0001, 0.01)


def test_yes_no_on_off_are_booleans_for_boolean_keys():
    cfg = load_config(None, ["runtime.channels_last=yes", "data.augment=Off", "transfer.augment=on"])
    assert (cfg.runtime.channels_last, cfg.data.augment, cfg.transfer.augment) == (True, False, True)


def test_yes_no_on_off_are_words_for_other_keys(tmp_path):
    recipe = write(tmp_path / "r.yaml", "name: no\ndata:\n  split: {train: [yes, on], val: [off], test: [no]}\n")
    cfg = load_config(recipe)
    assert cfg.name == "no" and cfg.data.split == {"train": ["yes", "on"], "val": ["off"], "test": ["no"]}


def test_a_word_for_a_number_key_is_one_sentence():
    with pytest.raises(ConfigError, match=r"^'task.lr' must be a number, not 'on'\.$"):
        load_config(None, ["task.lr=on"])


def test_a_saved_config_reads_back_as_it_was_with_either_yaml_reader():
    cfg = load_config(None, ["name='1e-3'", "task.lr=1e-3"])  # a name that looks like a number
    text = config_yaml(cfg)
    assert parse_yaml(text) == yaml.safe_load(text) == to_dict(cfg)


def test_a_recipe_cannot_run_code(tmp_path):
    recipe = write(tmp_path / "r.yaml", "name: !!python/object/apply:os.getcwd []\n")
    with pytest.raises(ConfigError, match="is not valid YAML at line 1"):
        load_config(recipe)


# ----------------------------------------------------------------------------- --print-config

def default_config():
    return to_dict(load_config(os.path.join(SHIPPED, "default.yaml")))


def test_without_config_the_shipped_default_is_one_log_line_and_an_error_stays_one_sentence(tmp_path, monkeypatch,
                                                                                             capsys):
    from learngene_ea.cli import run as run_cli

    monkeypatch.chdir(tmp_path)
    assert run_cli.main(["--set", "ea.elites=99"]) == 2
    out, err = capsys.readouterr()
    assert out.startswith("note: no --config: the shipped recipe 'default' (") and out.count("\n") == 1
    assert err.startswith("error: 'ea.elites' (99) must be smaller than") and err.count("\n") == 1


def test_the_run_command_without_config_uses_the_shipped_default_from_any_folder(tmp_path, monkeypatch, capsys):
    from learngene_ea.cli import run as run_cli

    monkeypatch.chdir(tmp_path)
    assert run_cli.main(["--print-config"]) == 0
    out, err = capsys.readouterr()
    assert yaml.safe_load(out) == default_config()
    assert err.count("\n") == 1 and "no --config: the shipped recipe 'default'" in err
    assert os.listdir(tmp_path) == []  # nothing made: no run folder


@pytest.mark.parametrize("command", ["run", "study", "transfer"])
def test_print_config_shows_recipe_base_and_overrides_for_every_command(command, tmp_path, monkeypatch, capsys):
    import importlib

    cli = importlib.import_module(f"learngene_ea.cli.{command}")
    monkeypatch.chdir(tmp_path)
    learngene = ["--learngene", str(write(tmp_path / "lg.pt", "x"))] if command == "transfer" else []
    argv = [*learngene, "--config", "cifarfs-vgg11", "--set", "task.lr=1e-3", "--print-config"]
    assert cli.main(argv) == 0
    expected = to_dict(load_config(os.path.join(SHIPPED, "cifarfs-vgg11.yaml"), ["task.lr=0.001"]))
    assert yaml.safe_load(capsys.readouterr().out) == expected
