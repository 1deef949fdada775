"""A learngene file described as a model card (``python -m learngene_ea.inspect FILE``): what it is, what it
was evolved on and with how much compute, what a descendant must be fed, and how to use it."""
from __future__ import annotations


def _get(meta: dict, *keys, default="not recorded"):
    value = meta
    for key in keys:
        if not isinstance(value, dict) or key not in value:
            return default
        value = value[key]
    return value


def _count(value) -> str:
    return f"{value:,}" if isinstance(value, int) else str(value)


def _pct(value) -> str:
    return f"{100 * value:.1f}%" if isinstance(value, (int, float)) else str(value)


def learngene_card(learngene, path: str, file_format: str) -> str:
    """Markdown model card of ``learngene`` (a :class:`~learngene_ea.core.learngene.Learngene`) read from ``path``."""
    meta, spec = learngene.meta, learngene.spec
    sizes = dict(spec.groups)
    kept = [f"`{g}` {int(m.sum())}/{sizes[g]}" for g, m in learngene.masks.items()]
    classes = _get(meta, "classes", default={})
    data = _get(meta, "data", default={})
    normalise = _get(meta, "input", "normalise", default={})
    fresh = _get(meta, "fresh_channels", default={})
    lines = [
        f"# Learngene of {learngene.family} (width {learngene.width:g})", "",
        f"- **file**: `{path}` ({file_format}); written by learngene-ea {_get(meta, 'package_version')}",
        f"- **size**: {learngene.num_params:,} parameters, {_pct(learngene.fraction)} of the network's gene layers; "
        f"channels kept per mask group: {', '.join(kept)}",
        f"- **input**: {learngene.in_channels} channels, images of side "
        f"{_get(meta, 'input', 'image_size', default=data.get('image_size', 'not recorded'))}, "
        f"normalised with mean {normalise.get('mean', 'not recorded')} and std {normalise.get('std', 'not recorded')}",
        f"- **evolved on**: {data.get('name', _get(meta, 'dataset'))}"
        + (f" (`{data['root']}`)" if data.get("root") else "")
        + f", {len(classes.get('train', []))} training and {len(classes.get('val', []))} validation classes seen "
        f"(a transfer refuses to test on them), seed {_get(meta, 'seed')}, recipe {_get(meta, 'recipe')}",
        f"- **compute**: {_count(_get(meta, 'training_images'))} training images of every descendant together "
        f"({_count(_get(meta, 'warm_start_images'))} of them the gene pool's warm start)",
        f"- **validation accuracy**: {_pct(_get(meta, 'fresh_validation', 'accuracy'))} on fresh episodes "
        f"({_pct(_get(meta, 'accuracy'))} as selected, biased upward)",
        "- **fresh channels of a descendant**: "
        + (f"`{fresh['rule']}`" + (f" (complement_scale {fresh['complement_scale']:g})" if fresh["rule"] == "scaled"
                                   else "") if fresh else "not recorded (the transfer's recipe decides)"),
        "", "Use it:", "", "```python", "import learngene_ea as lg", "",
        f"learngene = lg.load_learngene({path!r})",
        "model = lg.build_descendant(learngene, num_classes=5)   # or lg.inherit(your_module, learngene)",
        "```", "",
        f"`python -m learngene_ea.transfer --learngene {path}` scores it against the baselines on unseen classes.",
    ]
    return "\n".join(lines)
