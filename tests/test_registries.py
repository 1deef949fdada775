"""Registries by decorator: a family, a dataset, an engine is added in one place (its decorator, beside its
definition), and every list of choices (the recipe's checks and their hints, messages, the README) is read
from the registry's ``list_*``."""
import os
import re
import subprocess
import sys
from dataclasses import fields
from types import SimpleNamespace

import pytest

from conftest import ROOT
from learngene_ea.config.loading import choices_of, load_config
from learngene_ea.config.schema import ConfigError
from learngene_ea.config.schema import BACKENDS, DataConfig
from learngene_ea.core import models
from learngene_ea.data import dataset_kind, list_datasets, load_dataset, register_dataset
from learngene_ea.parallel import engines


@pytest.fixture
def own_families(monkeypatch):
    """The family registry, restored after the test."""
    monkeypatch.setattr(models, "_FAMILIES", dict(models._FAMILIES))


@pytest.fixture
def own_datasets(monkeypatch):
    """The dataset registry, restored after the test."""
    import learngene_ea.data as data

    monkeypatch.setattr(data, "_DATASETS", dict(data._DATASETS))


def test_the_shipped_registries_list_our_families_datasets_and_engines():
    assert models.list_families() == ["conv4", "conv6", "vgg11", "vgg13", "vgg16", "resnet12", "resnet24"]
    assert list_datasets() == ["synthetic", "cifarfs", "miniimagenet", "imagefolder"]
    assert engines.list_engines() == ["serial", "scoop", "ray"]


def test_a_family_registered_by_its_decorator_is_a_recipe_choice_a_model_and_a_descendant(own_families):
    from learngene_ea.transfer.descendants import parse_descendant

    @models.register_family("conv3")
    def conv3(width=1.0, in_channels=3, num_classes=64):
        return models.ConvNet(3, width, in_channels, num_classes)

    assert models.list_families()[-1] == "conv3"
    assert load_config(None, ["model.family=conv3"]).model.family == "conv3"
    model = models.build_model("conv3", 0.25, num_classes=5, seed=0)
    assert len(model.spec.layers) == 3 and model.head.out_features == 5
    assert parse_descendant("conv3@0.5", 1.0) == ("conv3", 0.5)
    with pytest.raises(ConfigError, match=r"'model.family' is 'conv33' \(did you mean 'conv3'\?\); it must be one "
                                          r"of: conv4, conv6, vgg11, vgg13, vgg16, resnet12, resnet24, conv3, "):
        load_config(None, ["model.family=conv33"])


def test_a_family_name_is_registered_once_in_lower_case_without_colon_or_at(own_families):
    rule = "must be lower case, without ':' or '@'"
    for name, problem in [("conv4", "is already registered"), ("Conv3", rule), ("my:net", rule), ("net@2", rule)]:
        with pytest.raises(ValueError, match=re.escape(f"model family {name!r} {problem}")):
            models.register_family(name)


def test_a_dataset_registered_by_its_decorator_is_a_recipe_choice_with_its_needs(own_datasets):
    images = object()  # what the loader returns comes back as it is

    @register_dataset("glyphs", needs_root=True)
    def glyphs(cfg, key):
        return images

    assert list_datasets()[-1] == "glyphs" and dataset_kind("glyphs").load is glyphs
    assert choices_of(next(f for f in fields(DataConfig) if f.name == "name").metadata) == list_datasets()
    with pytest.raises(ConfigError, match=r"'data.root' is required for data.name 'glyphs'"):
        load_config(None, ["data.name=glyphs"])
    cfg = load_config(None, ["data.name=glyphs", "data.root=/nowhere"])
    assert load_dataset(cfg.data) is images
    with pytest.raises(ConfigError, match=r"'data.name' is 'glyph' \(did you mean 'glyphs'\?\); it must be one of: "
                                          r"synthetic, cifarfs, miniimagenet, imagefolder, glyphs\."):
        load_config(None, ["data.name=glyph"])
    with pytest.raises(ValueError, match="dataset 'glyphs' is already registered"):
        register_dataset("glyphs")


def test_runtime_backend_choices_are_auto_and_the_registered_engines():
    """The schema sits below parallel/, so it writes runtime.backend's choices out; they are the registry's."""
    assert set(BACKENDS) == {"auto", *engines.list_engines()} and len(BACKENDS) == len(set(BACKENDS))


def test_an_engine_registered_by_its_decorator_is_the_one_its_backend_gets(monkeypatch):
    monkeypatch.setattr(engines, "_ENGINES", dict(engines._ENGINES))

    @engines.register_engine("threads")
    class ThreadEngine(engines.Engine):
        pass

    assert engines.list_engines()[-1] == "threads" and ThreadEngine.name == "threads"
    assert type(engines.engine_for(SimpleNamespace(backend="threads"))) is ThreadEngine
    assert type(engines.engine_for(SimpleNamespace(backend="serial"))) is engines.SerialEngine
    with pytest.raises(ValueError, match="engine 'ray' is already registered"):
        engines.register_engine("ray")


def test_the_package_exports_the_registries_lists_without_importing_torch():
    code = ("import sys, learngene_ea as lg; print('torch' in sys.modules); "
            "print(lg.list_families() == lg.core.models.list_families(), lg.list_datasets()); "
            "print({'list_families', 'list_datasets'} <= set(lg.__all__))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    assert out.splitlines() == ["False", "True ['synthetic', 'cifarfs', 'miniimagenet', 'imagefolder']", "True"]


def test_the_readme_datasets_table_lists_the_registered_datasets():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    table = readme.split("## Datasets", 1)[1].split("\n\n", 2)[1]
    assert re.findall(r"^\| `(\w+)`", table, flags=re.M) == list_datasets()
