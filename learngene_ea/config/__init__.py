"""Recipes: YAML -> validated :class:`Config` (``loading``), every key and its range (``schema``), the recipe
against its dataset before anything runs (``checks``)."""
