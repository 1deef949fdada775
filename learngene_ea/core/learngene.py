"""The learngene: channel masks per mask group + the weights of the kept sub-kernels.

For gene layer ``l`` the learngene keeps ``W_l[kept_out_l][:, kept_in_l]`` (``kept_in`` is the
kept output channels of the layer it reads; all image channels for the first layer) and the
BatchNorm affine parameters and running statistics of ``kept_out_l``. Weights are numpy
arrays, so a learngene (and a population of them) pickles cheaply and safely.

Functions here are the tensor side of GTL: :func:`extract_learngene` reads a trained network,
:func:`inherit_learngene` writes into a fresh descendant (same family at any width or depth,
or another family with the same kind of layers), and :meth:`Learngene.save`/:func:`load_learngene`
give a portable file that loads with ``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import dataclasses
import io
import os
from dataclasses import dataclass, field

import numpy as np
import torch

from ..errors import UserError
from ..io.paths import file_problem
from .backbone import input_mask, input_places, spec_from_state, spec_to_state
from .fresh import start_fresh_channels
from .backbone import ArchSpec, Backbone, GeneLayer
from .models import arch_spec
from .traced import is_traced

FORMAT = "learngene-ea/learngene-v1"
WEIGHT_KEYS = ("conv", "bn_weight", "bn_bias", "bn_mean", "bn_var")


def full_masks(spec: ArchSpec) -> dict[str, np.ndarray]:
    """Every channel of every group: the learngene of a whole network (fraction 1.0)."""
    return {name: np.ones(size, dtype=bool) for name, size in spec.groups}


def kept_indices(mask: np.ndarray) -> np.ndarray:
    return np.flatnonzero(mask)


def learngene_size(spec: ArchSpec, masks: dict[str, np.ndarray]) -> int:
    """Parameters in the learngene's sub-kernels (conv weights + BN affine of kept channels)."""
    total = 0
    for layer in spec.layers:
        kept_out = int(masks[layer.group].sum())
        reads = input_mask(layer, masks)
        kept_in = layer.in_channels if reads is None else int(reads.sum())
        total += layer.num_params(kept_out, kept_in)
    return total


def learngene_fraction(spec: ArchSpec, masks: dict[str, np.ndarray]) -> float:
    """Learngene size / parameters of the ancestry network's gene layers (+ BatchNorms)."""
    return learngene_size(spec, masks) / spec.num_gene_params()


@dataclass
class Learngene:
    """Masks and kept sub-kernel weights of one learngene, plus where they came from.

    Attributes:
        family, width, in_channels: the ancestry architecture (``arch_spec`` rebuilds it).
        masks: group name -> bool array over the group's output channels.
        weights: gene layer name -> {"conv", "bn_weight", "bn_bias", "bn_mean", "bn_var"}
            numpy float32 arrays over the kept channels only.
        meta: plain data: lineage (id, parents, generation born), fitness, dataset, ...
        network: a traced network's :class:`ArchSpec` as it was traced (recorded in the file, so a
            learngene of a user's network is read without importing its code); ``None`` for ours.
    """

    family: str
    width: float
    in_channels: int
    masks: dict[str, np.ndarray]
    weights: dict[str, dict[str, np.ndarray]]
    meta: dict = field(default_factory=dict)
    network: ArchSpec | None = field(default=None, repr=False)

    @property
    def spec(self) -> ArchSpec:
        if self.network is not None:
            return self.network
        return arch_spec(self.family, self.width, self.in_channels)

    def __getstate__(self) -> dict:
        # a traced network's spec pickles as plain data: checkpoints admit no other classes
        state = dict(self.__dict__)
        if state.get("network") is not None:
            state["network"] = spec_to_state(state["network"])
        return state

    def __setstate__(self, state: dict) -> None:
        network = state.get("network")
        self.__dict__.update({**state, "network": spec_from_state(network) if isinstance(network, dict) else network})

    @property
    def num_params(self) -> int:
        return learngene_size(self.spec, self.masks)

    @property
    def fraction(self) -> float:
        return learngene_fraction(self.spec, self.masks)

    def restrict(self, masks: dict[str, np.ndarray]) -> "Learngene":
        """The learngene limited to channels kept both here and in ``masks``.

        Mutations change an individual's masks; its stored weights only cover the channels
        that were kept when they were extracted, so dropped channels are sliced away and
        re-added channels (not in ``self.masks``) stay freshly initialised in the descendant.
        """
        new_masks = {g: np.logical_and(self.masks[g], masks[g]) for g in self.masks}
        spec = self.spec
        weights = {}
        for layer in spec.layers:
            if layer.name not in self.weights:
                continue
            w = self.weights[layer.name]
            out_sel = new_masks[layer.group][self.masks[layer.group]]
            conv = w["conv"][out_sel]
            if layer.in_group is not None:
                conv = conv[:, input_mask(layer, new_masks)[input_mask(layer, self.masks)]]
            weights[layer.name] = {"conv": np.ascontiguousarray(conv),
                                   **{k: w[k][out_sel].copy() for k in WEIGHT_KEYS[1:]}}
        return dataclasses.replace(self, masks=new_masks, weights=weights, meta=dict(self.meta))

    # ------------------------------------------------------------------ portable file
    def to_state(self) -> dict:
        """Plain dict of tensors, strings and numbers (``torch.load(weights_only=True)``-safe)."""
        return {
            "format": FORMAT,
            "family": self.family,
            "width": float(self.width),
            "in_channels": int(self.in_channels),
            "masks": {g: torch.from_numpy(m.copy()) for g, m in self.masks.items()},
            "weights": {name: {k: torch.from_numpy(np.array(v, dtype=np.float32)) for k, v in w.items()}
                        for name, w in self.weights.items()},
            "num_params": int(self.num_params),
            "fraction": float(self.fraction),
            "meta": _plain(self.meta),
            **({"network": spec_to_state(self.network)} if self.network is not None else {}),
        }

    @classmethod
    def from_state(cls, state: dict) -> "Learngene":
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            raise ValueError("not a learngene-ea learngene file")
        return cls(
            family=state["family"], width=float(state["width"]), in_channels=int(state["in_channels"]),
            masks={g: m.numpy().astype(bool) for g, m in state["masks"].items()},
            weights={name: {k: v.numpy().astype(np.float32) for k, v in w.items()}
                     for name, w in state["weights"].items()},
            meta=dict(state.get("meta", {})),
            network=spec_from_state(state["network"]) if "network" in state else None,
        )

    def save(self, path: str | os.PathLike, format: str | None = None) -> None:
        """Write the learngene atomically to ``path``: ``format="pt"`` (``torch.save`` of :meth:`to_state`) or
        ``"safetensors"`` (:mod:`.safetensors_file`); ``None``: by the extension (``.safetensors``, else pt)."""
        from ..io.atomic import atomic_write_bytes

        format = format or ("safetensors" if os.fspath(path).endswith(".safetensors") else "pt")
        if format == "safetensors":
            from .safetensors_file import state_to_safetensors

            atomic_write_bytes(path, state_to_safetensors(self.to_state()))
            return
        if format != "pt":
            raise ValueError(f"format must be 'pt' or 'safetensors', not {format!r}")
        buffer = io.BytesIO()
        torch.save(self.to_state(), buffer)
        atomic_write_bytes(path, buffer.getvalue())


def _plain(value):
    """Meta data reduced to what ``weights_only`` loading accepts."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def load_learngene(path: str | os.PathLike) -> Learngene:
    """Load a learngene file (``torch.load(weights_only=True)``, or safetensors); clear error if it is not one."""
    path = os.fspath(path)
    problem = file_problem(path)
    if problem:
        raise UserError(f"Learngene file {path!r} {problem}; pass the learngene.pt of a finished run.")
    from .safetensors_file import is_safetensors, require_safetensors, state_from_safetensors

    safetensors = is_safetensors(path)
    if safetensors:
        require_safetensors()  # its own sentence, not "not a learngene file"
    try:
        state = state_from_safetensors(path) if safetensors else torch.load(path, map_location="cpu", weights_only=True)
        return Learngene.from_state(state)
    except Exception as err:  # any unpickling/format problem is the same user-facing fact
        raise UserError(f"{path!r} is not a readable learngene-ea learngene file ({type(err).__name__}); "
                        "pass the learngene.pt written by a run.") from err


# ------------------------------------------------------------------------ tensor side

def extract_learngene(model: Backbone, masks: dict[str, np.ndarray], meta: dict | None = None) -> Learngene:
    """Read the kept sub-kernels (and BatchNorm state) of ``model`` under ``masks``: every gene layer
    copied to the host in one transfer (:func:`gene_weights`)."""
    return learngene_from_weights(model.spec, gene_weights(model), masks, meta)


def gene_tensors(module) -> tuple[torch.Tensor, ...]:
    """A gene layer's (or a stack's grouped gene layer's) tensors, in :data:`WEIGHT_KEYS` order."""
    bn = module.bn
    return module.conv.weight, bn.weight, bn.bias, bn.running_mean, bn.running_var


def host_arrays(tensors: list[torch.Tensor]) -> list[np.ndarray]:
    """float32 numpy copies of ``tensors`` (same shapes), copied to the host in one transfer."""
    with torch.no_grad():
        flat = torch.cat([t.detach().float().reshape(-1) for t in tensors]).cpu().numpy()
    sizes = np.cumsum([t.numel() for t in tensors])[:-1]
    return [part.reshape(t.shape) for part, t in zip(np.split(flat, sizes), tensors)]


def gene_weights(model: Backbone) -> dict[str, dict[str, np.ndarray]]:
    """Every gene layer's whole conv weight and BatchNorm state (:data:`WEIGHT_KEYS`), on the host."""
    layers = model.spec.layers
    arrays = host_arrays([t for layer in layers for t in gene_tensors(model.gene_module(layer.name))])
    return {layer.name: dict(zip(WEIGHT_KEYS, arrays[5 * k:5 * k + 5])) for k, layer in enumerate(layers)}


def learngene_from_weights(spec: ArchSpec, weights: dict[str, dict[str, np.ndarray]], masks: dict[str, np.ndarray],
                           meta: dict | None = None) -> Learngene:
    """The learngene under ``masks`` of a network of ``spec`` whose gene layers hold ``weights``
    (:func:`gene_weights`): the kept sub-kernels and the kept channels' BatchNorm state."""
    kept = {}
    for layer in spec.layers:
        w = weights[layer.name]
        out_idx = kept_indices(masks[layer.group])
        conv = w["conv"][out_idx]
        if layer.in_group is not None:
            conv = conv[:, kept_indices(input_mask(layer, masks))]
        kept[layer.name] = {"conv": np.ascontiguousarray(conv, dtype=np.float32),
                            **{key: np.array(w[key][out_idx], dtype=np.float32) for key in WEIGHT_KEYS[1:]}}
    return Learngene(spec.family, spec.width, spec.in_channels,
                     {g: np.asarray(m, dtype=bool).copy() for g, m in masks.items()}, kept, dict(meta or {}),
                     spec if is_traced(spec.family) else None)


def match_layers(source: ArchSpec, target: ArchSpec) -> dict[str, GeneLayer]:
    """Target gene layer name -> the source gene layer whose sub-kernels it inherits.

    Same family: layers match by name. Otherwise by position (stage, index in stage, role):
    a VGG11 learngene fills the first layers of each VGG16 stage, the extra layers stay fresh.
    """
    if source.family == target.family:
        names = {layer.name: layer for layer in source.layers}
        return {layer.name: names[layer.name] for layer in target.layers if layer.name in names}
    positions = {(layer.stage, layer.index, layer.role): layer for layer in source.layers}
    matched = {}
    for layer in target.layers:
        src = positions.get((layer.stage, layer.index, layer.role))
        if src is not None and src.kernel_size == layer.kernel_size and (src.in_channels == 1) == (layer.in_channels == 1):
            matched[layer.name] = src
    return matched


def inherit_learngene(model: Backbone, learngene: Learngene, complement_scale: float = 1.0,
                      fresh_channels: str = "scaled") -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Write the learngene's sub-kernels into the descendant ``model`` at their channel positions.

    Channels keep their index; in a narrower descendant channels beyond its width are left out,
    in a wider or deeper one the extra channels and layers keep their fresh initialisation, and the
    fresh channels of written groups start under the rule ``fresh_channels``: ``scaled`` by
    ``complement_scale``, or ``grow`` (read with zero weights; :mod:`.fresh`).
    Everything written goes to the model's device in one host-to-device transfer (:func:`packed_copy`).
    Returns, per written layer, the (out, in) channel indices written (for tests and reports).
    """
    target = model.spec
    if learngene.network is not None and target.family == learngene.family and target != learngene.network:
        raise UserError(f"{learngene.family} traces differently here than when its learngene was saved (another "
                        "torchvision or factory version?); evolve the learngene again with this one.")
    written, arrays = {}, []
    for name, src in match_layers(learngene.spec, target).items():
        if src.name not in learngene.weights:
            continue
        dst = target.layer(name)
        w = learngene.weights[src.name]
        out_idx = kept_indices(learngene.masks[src.group])
        out_sel = out_idx < dst.out_channels
        _, in_idx = input_places(src, dst, learngene.masks, learngene.spec.group_sizes, target.group_sizes)
        in_sel = in_idx >= 0
        if not out_sel.any() or not in_sel.any():
            continue
        written[name] = (out_idx[out_sel], in_idx[in_sel])
        arrays += [out_idx[out_sel].astype(np.int64), in_idx[in_sel].astype(np.int64), w["conv"][out_sel][:, in_sel],
                   *(w[key][out_sel] for key in WEIGHT_KEYS[1:])]
    if not written:
        return written
    tensors = packed_copy(arrays, next(model.parameters()).device)
    with torch.no_grad():
        for k, name in enumerate(written):
            o, i, conv, *bn = tensors[7 * k:7 * k + 7]
            module = model.gene_module(name)
            module.conv.weight[o.unsqueeze(1), i.unsqueeze(0)] = conv  # (cast to the weights' dtype)
            for tensor, value in zip(gene_tensors(module)[1:], bn):
                tensor[o] = value
    start_fresh_channels(model, written, fresh_channels, complement_scale)
    return written


def packed_copy(arrays: list[np.ndarray], device: torch.device) -> list[torch.Tensor]:
    """``arrays`` (int64 or float32) as tensors on ``device``, copied in one transfer: their bytes are
    packed into one buffer (each part 8-byte aligned), copied, and viewed back as each array."""
    arrays = [np.ascontiguousarray(a) for a in arrays]
    parts, starts, end = [], [], 0
    for a in arrays:
        raw = a.reshape(-1).view(np.uint8)
        starts.append(end)
        parts += [raw, np.zeros(-raw.size % 8, dtype=np.uint8)]
        end += raw.size + (-raw.size % 8)
    buffer = torch.from_numpy(np.concatenate(parts)).to(device)
    dtypes = [torch.from_numpy(a[:0].reshape(-1)).dtype for a in arrays]
    return [buffer[start:start + a.nbytes].view(dtype).view(a.shape) for a, start, dtype in zip(arrays, starts, dtypes)]


def channel_importance(learngene: Learngene, criterion: str = "l1") -> dict[str, np.ndarray]:
    """Importance of every channel of every group (``-inf`` where the channel is not kept).

    ``l1``: mean L1 norm of the channel's filters over the group's layers; ``bn``: mean absolute
    BatchNorm scale; ``score``: the gene pool's learngene score (``meta['scores']``), ties (as in
    generation 0, where every descendant carried every channel) broken by ``l1``.
    """
    if criterion == "score":
        return _pool_score_importance(learngene)
    spec = learngene.spec
    scores = {g: np.full(size, -np.inf) for g, size in spec.groups}
    sums = {g: np.zeros(size) for g, size in spec.groups}
    counts = {g: 0 for g, _ in spec.groups}
    for layer in spec.layers:
        if layer.name not in learngene.weights:
            continue
        w = learngene.weights[layer.name]
        idx = kept_indices(learngene.masks[layer.group])
        if criterion == "bn":
            value = np.abs(w["bn_weight"])
        else:
            value = np.abs(w["conv"]).reshape(len(idx), -1).mean(axis=1)
        sums[layer.group][idx] += value
        counts[layer.group] += 1
    for g in scores:
        if counts[g]:
            kept = learngene.masks[g]
            scores[g][kept] = sums[g][kept] / counts[g]
    return scores


def _pool_score_importance(learngene: Learngene) -> dict[str, np.ndarray]:
    pool_scores = learngene.meta.get("scores")
    if not pool_scores:
        raise ValueError("criterion 'score' needs learngene scores: run with fitness.inheritance pool")
    l1 = channel_importance(learngene, "l1")
    scores = {}
    for group, values in l1.items():
        kept = learngene.masks[group]
        finite = values[kept & np.isfinite(values)]
        scale = float(np.max(finite)) if finite.size and np.max(finite) > 0 else 1.0
        scores[group] = np.full(len(values), -np.inf)
        # scores are accuracy differences (~0.01); the l1 term stays below 1e-3
        scores[group][kept] = np.asarray(pool_scores[group], dtype=np.float64)[kept] + 1e-3 * values[kept] / scale
    return scores
