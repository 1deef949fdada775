"""Recipes load into a typed config; every mistake names its key."""
import pytest
import yaml

from learngene_ea.config.loading import from_dict, load_config, to_dict
from learngene_ea.config.schema import ConfigError


def test_defaults_load_without_a_recipe():
    cfg = load_config(None)
    assert cfg.model.family == "conv4" and cfg.data.name == "synthetic"


def test_the_default_recipe_is_valid(tmp_path):
    import os

    from conftest import ROOT

    cfg = load_config(os.path.join(ROOT, "genomes", "default.yaml"))
    assert cfg.data.name == "synthetic" and cfg.model.family == "conv4"
    assert cfg.transfer.after_run  # the main job ends with the transfer table


def test_every_shipped_recipe_is_valid():
    import glob
    import os

    from conftest import ROOT

    recipes = glob.glob(os.path.join(ROOT, "genomes", "*.yaml"))
    assert recipes
    for path in recipes:
        load_config(path, ["data.root=/somewhere"])


def test_unknown_key_is_named_with_a_suggestion():
    with pytest.raises(ConfigError, match=r"Unknown key 'ea.populaton_size'.*did you mean 'ea.population_size'"):
        from_dict({"ea": {"populaton_size": 4}})


def test_unknown_section_is_named():
    with pytest.raises(ConfigError, match=r"Unknown key 'modle'.*did you mean 'model'"):
        from_dict({"modle": {"family": "conv4"}})


def test_wrong_type_names_the_key():
    with pytest.raises(ConfigError, match=r"'ea.population_size' must be an integer"):
        from_dict({"ea": {"population_size": "many"}})


def test_bool_is_not_accepted_as_a_number():
    with pytest.raises(ConfigError, match=r"'model.width' must be a number"):
        from_dict({"model": {"width": True}})


def test_out_of_range_values_name_the_key():
    with pytest.raises(ConfigError, match=r"'ea.population_size' is -3; it must be at least 2"):
        from_dict({"ea": {"population_size": -3}})
    with pytest.raises(ConfigError, match=r"'ea.target_fraction' is 1.5; it must be at most 1"):
        from_dict({"ea": {"target_fraction": 1.5}})
    with pytest.raises(ConfigError, match=r"'ea.target_fraction' is 0.0; it must be greater than 0"):
        from_dict({"ea": {"target_fraction": 0}})


def test_unknown_family_lists_the_choices_and_suggests():
    with pytest.raises(ConfigError, match=r"'model.family' is 'vgg12'.*did you mean 'vgg1.'.*conv4"):
        from_dict({"model": {"family": "vgg12"}})


def test_real_datasets_need_a_root():
    with pytest.raises(ConfigError, match=r"'data.root' is required"):
        from_dict({"data": {"name": "cifarfs"}})


def test_set_overrides_parse_yaml_scalars_and_lists(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"ea": {"population_size": 6}}))
    cfg = load_config(recipe, ["ea.population_size=10", "model.width=0.5", "transfer.shots=[1, 10]",
                               "data.augment=false", "seed=7"])
    assert cfg.ea.population_size == 10
    assert cfg.model.width == 0.5
    assert cfg.transfer.shots == [1, 10]
    assert cfg.data.augment is False
    assert cfg.seed == 7


def test_override_of_unknown_key_is_rejected():
    with pytest.raises(ConfigError, match=r"Unknown key 'ea.generatons'.*did you mean 'ea.generations'"):
        load_config(None, ["ea.generatons=3"])


def test_malformed_override_is_rejected():
    with pytest.raises(ConfigError, match="section.key=value"):
        load_config(None, ["ea.generations"])


def test_missing_recipe_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")


def test_invalid_yaml_names_the_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("ea:\n  population_size: [1,\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_resolved_config_round_trips():
    cfg = load_config(None, ["ea.generations=9"])
    again = from_dict(yaml.safe_load(yaml.safe_dump(to_dict(cfg))))
    assert again == cfg


def test_operator_function_must_name_module_and_function():
    with pytest.raises(ConfigError, match="operators.select.function"):
        from_dict({"operators": {"select": {"function": "no_colon_here"}}})


def _float_keys(cls=None, prefix=""):
    """Every float key of the schema, as ``section.key``."""
    import dataclasses
    import typing

    from learngene_ea.config.schema import Config

    cls = cls or Config
    keys = []
    for name, tp in typing.get_type_hints(cls).items():
        if tp is float:
            keys.append(prefix + name)
        elif isinstance(tp, type) and dataclasses.is_dataclass(tp):
            keys += _float_keys(tp, f"{prefix}{name}.")
    return keys


@pytest.mark.parametrize("key", _float_keys())
@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf"])
def test_every_float_key_refuses_nan_and_infinity(key, value):
    with pytest.raises(ConfigError, match=rf"'{key}' is (nan|inf|-inf); it must be a finite number\."):
        load_config(None, [f"{key}={value}"])


def test_the_schema_has_the_float_keys_the_test_above_covers():
    assert {"model.width", "ea.parsimony_tolerance", "runtime.stall_timeout", "task.lr"} <= set(_float_keys())


def test_an_integer_too_large_for_a_float_key_is_named():
    with pytest.raises(ConfigError, match=r"'model.width' is an integer of 401 digits, too large for a number"):
        load_config(None, ["model.width=1" + "0" * 400])


@pytest.mark.parametrize("key", ["seed", "data.seed", "transfer.seed"])
def test_seeds_are_bounded_to_what_the_generators_take(key):
    load_config(None, [f"{key}={2**32 - 1}"])
    with pytest.raises(ConfigError, match=rf"'{key}' is 4294967296; it must be at most 4294967295\."):
        load_config(None, [f"{key}={2**32}"])


@pytest.mark.parametrize("device", ["auto", "cpu", "cuda", "cuda:0", "cuda:12"])
def test_device_strings_of_the_documented_forms_load(device):
    assert load_config(None, [f"runtime.device={device}"]).runtime.device == device


@pytest.mark.parametrize("device", ["banana", "gpu", "cuda:1:2", "cuda:-1", "cuda:one", "CPU"])
def test_other_device_strings_are_refused_at_load(device):
    with pytest.raises(ConfigError, match=rf"'runtime.device' is '{device}'; it must be auto, cpu, cuda or cuda:N"):
        load_config(None, [f"runtime.device={device}"])


def test_a_duplicated_key_in_a_recipe_names_both_lines(tmp_path):
    recipe = tmp_path / "twice.yaml"
    recipe.write_text("ea:\n  population_size: 4\n  generations: 2\n  population_size: 6\n")
    with pytest.raises(ConfigError, match=r"gives the key 'population_size' twice in one section \(lines 2 and 4\)"):
        load_config(recipe)


def test_yaml_merge_keys_are_not_duplicates(tmp_path):
    recipe = tmp_path / "merge.yaml"
    recipe.write_text("task: &t {steps: 3}\nfitness: {episodes: 2}\ntransfer:\n  <<: {steps: 5}\n  episodes: 3\n")
    cfg = load_config(recipe)
    assert cfg.task.steps == 3 and cfg.transfer.steps == 5 and cfg.transfer.episodes == 3


def test_a_duplicated_key_in_a_set_value_is_refused():
    with pytest.raises(ConfigError, match=r"gives the key 'function' twice"):
        load_config(None, ["operators.mutate={function: 'a:b', function: 'c:d'}"])


def test_a_recipe_with_a_byte_order_mark_loads(tmp_path):
    recipe = tmp_path / "bom.yaml"
    recipe.write_bytes("\ufeffea:\n  generations: 3\n".encode("utf-8"))
    assert load_config(recipe).ea.generations == 3


@pytest.mark.parametrize("key", ["name", "data.root", "data.cache_dir", "runtime.ray_address", "transfer.cache_dir"])
def test_a_nul_character_in_a_string_key_is_refused_at_load(key):
    with pytest.raises(ConfigError, match=rf"'{key}' is 'a\\x00b', which holds a NUL character; remove it\."):
        from_dict(yaml.safe_load(f'{key.split(".")[0]}: ' + ('{%s: "a\\0b"}' % key.split(".")[1] if "." in key
                                                             else '"a\\0b"')))


def test_undecodable_command_line_bytes_in_a_string_key_are_refused_at_load():
    # Linux hands Python a command line's non-UTF-8 bytes as lone surrogates ('\udcff'): they fail in plots
    with pytest.raises(ConfigError, match=r"'name' is '\\udcff', which holds bytes that are not UTF-8 text"):
        load_config(None, ["name=\udcff"])
    with pytest.raises(ConfigError, match=r"'data.split' is .*, which holds bytes that are not UTF-8 text"):
        from_dict({"data": {"split": {"train": ["\udcff"], "val": 1, "test": 1}}})
    cfg = from_dict({"operators": {"mutate": {"function": "m:f", "kwargs": {"x": "\udcff"}}}})
    assert cfg.operators.mutate.kwargs == {"x": "\udcff"}  # an operator's own arguments are its business


def test_transfer_on_validation_classes_is_refused_with_a_target():
    from learngene_ea.config.loading import load_config
    from learngene_ea.config.schema import ConfigError

    with pytest.raises(ConfigError, match="'transfer.classes' val evaluates on the source's validation classes"):
        load_config(None, ["transfer.classes=val", "transfer.target.name=synthetic"])
