"""NVIDIA stylegan2-ada-pytorch network pickles (``.pkl``) with a ``G_ema`` generator.

Those pickles embed the Python source of every network class (``torch_utils.persistence``), and
a plain ``pickle.load`` would import and run it. They are read with ganbrush's one restricted
unpickler (:mod:`ganbrush_core.safe_pickle`) and an allow-list of tensors, numpy scalars, plain
containers and the persistence record, which becomes an inert :class:`PersistentObject` (class
name, init arguments, parameters, buffers, children): the embedded source is never compiled.
The architecture comes from the state dict (mapping depth, resolutions, channels) and from the
constructor arguments stored as data in the persistence record (``conv_clamp``, ``lr_multiplier``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import torch

from ganbrush_core.safe_pickle import (
    NUMPY_SCALARS,
    PLAIN_CONTAINERS,
    AllowList,
    UnsafePickleError,
    restricted_load,
    torch_tensors,
)
from stylegan_ops.formats.common import FormatError, generator_from_state
from stylegan_ops.networks import Generator, GeneratorConfig


@dataclass
class PersistentObject:
    """Inert stand-in for a ``torch_utils.persistence`` object: its data, never its code."""

    class_name: str
    module_name: str
    state: dict = field(repr=False)

    @property
    def init_kwargs(self) -> dict:
        return dict(self.state.get("_init_kwargs") or self.state.get("init_kwargs") or {})

    @property
    def init_args(self) -> tuple:
        return tuple(self.state.get("_init_args") or self.state.get("init_args") or ())

    def children(self) -> dict[str, PersistentObject]:
        return {k: v for k, v in (self.state.get("_modules") or {}).items() if isinstance(v, PersistentObject)}

    def state_dict(self, prefix: str = "") -> dict[str, torch.Tensor]:
        """Parameters and buffers of this object and its children, keyed like ``nn.Module``."""
        out: dict[str, torch.Tensor] = {}
        for group in ("_parameters", "_buffers"):
            for name, t in (self.state.get(group) or {}).items():
                if isinstance(t, torch.Tensor):
                    out[prefix + name] = t.detach()
        for name, child in self.children().items():
            out.update(child.state_dict(prefix + name + "."))
        return out


class _EasyDict(dict):
    """``dnnlib.EasyDict`` is a dict with attribute access; keep only the dict."""


def _reconstruct_persistent_obj(meta: Any) -> PersistentObject:
    if not isinstance(meta, dict) or meta.get("type") != "class":
        raise UnsafePickleError("unexpected persistent object record (not a network class)")
    state = meta.get("state") or {}
    if not isinstance(state, dict):
        raise UnsafePickleError("persistent object state is not a dict")
    # meta["module_src"] holds Python source: deliberately ignored, never compiled or run.
    return PersistentObject(str(meta.get("class_name")), str(meta.get("module_name", "")), state)


def allowed() -> AllowList:
    """What an NVIDIA network pickle may reference: tensors, numpy scalars, plain containers,
    ``dnnlib.EasyDict`` (as a dict) and the persistence record (as a :class:`PersistentObject`)."""
    return {**torch_tensors(), **NUMPY_SCALARS, **PLAIN_CONTAINERS,
            ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent_obj,
            ("dnnlib.util", "EasyDict"): _EasyDict,
            ("dnnlib", "EasyDict"): _EasyDict}


def read(f: BinaryIO) -> Any:
    """Unpickle an NVIDIA network pickle without running any code in it."""
    return restricted_load(f, allowed(), "tensors, numpy scalars and plain containers")


def _generator_record(data) -> PersistentObject:
    if not isinstance(data, dict):
        raise FormatError(f"expected a dict with 'G_ema', found {type(data).__name__}")
    g = data.get("G_ema")
    if not isinstance(g, PersistentObject):
        raise FormatError(f"no 'G_ema' network in the pickle; entries: {sorted(map(str, data))}")
    if g.class_name != "Generator" or set(g.children()) != {"mapping", "synthesis"}:
        raise FormatError(f"'G_ema' is a {g.class_name} with parts {sorted(g.children())}, not a StyleGAN2 generator")
    return g


def infer_config(g: PersistentObject, sd: dict[str, torch.Tensor]) -> GeneratorConfig:
    kw = g.init_kwargs
    synthesis_kw = {**dict(kw.get("synthesis_kwargs") or {}), **g.children()["synthesis"].init_kwargs}
    mapping_kw = {**dict(kw.get("mapping_kwargs") or {}), **g.children()["mapping"].init_kwargs}
    if kw.get("c_dim", 0) or "mapping.embed.weight" in sd:
        raise FormatError("conditional generators (c_dim > 0) are not supported")
    if synthesis_kw.get("architecture", "skip") != "skip":
        raise FormatError(f"synthesis architecture {synthesis_kw['architecture']!r} is not supported (only 'skip')")
    fcs = sorted(int(m.group(1)) for k in sd if (m := re.fullmatch(r"mapping\.fc(\d+)\.weight", k)))
    resolutions = sorted(int(m.group(1)) for k in sd if (m := re.fullmatch(r"synthesis\.b(\d+)\.torgb\.weight", k)))
    if not fcs or not resolutions or "synthesis.b4.const" not in sd:
        raise FormatError("G_ema has no StyleGAN2 mapping/synthesis layers")
    channels = {r: int(sd[f"synthesis.b{r}.conv1.weight"].shape[0]) for r in resolutions}
    conv_clamp = synthesis_kw.get("conv_clamp")
    cfg = dict(
        img_resolution=resolutions[-1],
        z_dim=int(sd["mapping.fc0.weight"].shape[1]),
        w_dim=int(sd[f"mapping.fc{fcs[-1]}.weight"].shape[0]),
        img_channels=int(sd["synthesis.b4.torgb.weight"].shape[0]),
        mapping_layers=len(fcs),
        mapping_lr_mul=float(mapping_kw.get("lr_multiplier", 0.01)),
        channels=channels,
        conv_clamp=None if conv_clamp is None else float(conv_clamp),
        w_avg_beta=float(mapping_kw.get("w_avg_beta", 0.995)),
    )
    if "synthesis.b4.resample_filter" in sd:
        cfg["resample_filter"] = sd["synthesis.b4.resample_filter"].tolist()
    return GeneratorConfig(**cfg)


def convert_state(sd: dict[str, torch.Tensor], cfg: GeneratorConfig) -> dict[str, torch.Tensor]:
    """NVIDIA key names -> ganbrush key names."""
    out: dict[str, torch.Tensor] = {"mapping_network.w_avg": sd["mapping.w_avg"]}
    for i in range(cfg.mapping_layers):
        out[f"mapping_network.layers.{i}.weight"] = sd[f"mapping.fc{i}.weight"]
        out[f"mapping_network.layers.{i}.bias"] = sd[f"mapping.fc{i}.bias"]
    for res in sorted(cfg.channels):
        src, dst = f"synthesis.b{res}", f"synthesis_network.blocks.b{res}"
        if res == 4:
            out[f"{dst}.const"] = sd[f"{src}.const"]
        for layer in ("conv1",) if res == 4 else ("conv0", "conv1"):
            for name in ("noise_strength", "noise_const", "bias"):
                out[f"{dst}.{layer}.{name}"] = sd[f"{src}.{layer}.{name}"]
            out[f"{dst}.{layer}.conv.weight"] = sd[f"{src}.{layer}.weight"]
            out[f"{dst}.{layer}.conv.affine.weight"] = sd[f"{src}.{layer}.affine.weight"]
            out[f"{dst}.{layer}.conv.affine.bias"] = sd[f"{src}.{layer}.affine.bias"]
        out[f"{dst}.torgb.bias"] = sd[f"{src}.torgb.bias"]
        out[f"{dst}.torgb.conv.weight"] = sd[f"{src}.torgb.weight"]
        out[f"{dst}.torgb.conv.affine.weight"] = sd[f"{src}.torgb.affine.weight"]
        out[f"{dst}.torgb.conv.affine.bias"] = sd[f"{src}.torgb.affine.bias"]
    return out


def to_generator(data) -> Generator:
    g = _generator_record(data)
    sd = g.state_dict()
    cfg = infer_config(g, sd)
    try:
        state = convert_state(sd, cfg)
    except KeyError as e:
        raise FormatError(f"G_ema is missing tensor {e.args[0]!r}") from None
    return generator_from_state(cfg, state)
