"""Recipes: YAML -> validated :class:`Config` (``loading``), every key and its range (``schema``), the recipe
against its dataset before anything runs (``checks``)."""
from .loading import *  # noqa: F401,F403
from .loading import (DEFAULT_RECIPE, apply_overrides, dataset_label, from_dict, load_config, parse_override,  # noqa: F401
                      read_recipe, recipe_name, save_config, to_dict)
from .schema import (Config, ConfigError, DataConfig, EAConfig, FitnessConfig, ModelConfig,  # noqa: F401
                     OperatorsConfig, OperatorSpec, PoolConfig, RuntimeConfig, TaskConfig, TransferConfig)
