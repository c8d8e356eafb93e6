"""Checkpoints: weights as safetensors plus a JSON of constructor arguments and input shapes.

``save_model(model, path)`` writes ``path.safetensors`` and ``path.json``; ``load_model(path)``
rebuilds the module from the JSON and loads the weights. Nothing is unpickled. Only
modules whose encoders come from ``mmlego.nn.encoders.ENCODER_REGISTRY`` can be saved.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from mmlego.nn.block import LegoBlock
from mmlego.nn.fuse import LegoFuse
from mmlego.nn.merge import LegoMerge

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1


def _paths(path: str | Path) -> tuple[Path, Path]:
    path = Path(path)
    if path.suffix in (".safetensors", ".json"):
        path = path.with_suffix("")
    return path.with_name(path.name + ".safetensors"), path.with_name(path.name + ".json")


def _describe(model: nn.Module) -> dict[str, Any]:
    if isinstance(model, LegoBlock):
        if not model.serialisable:
            raise ValueError(
                "this LegoBlock has a custom encoder module, which a checkpoint cannot rebuild. "
                "Build the encoder by name from ENCODER_REGISTRY"
            )
        return {"class": "LegoBlock", "config": model.config, "input_shapes": {"x": [None, model.in_features]}}
    if isinstance(model, (LegoFuse, LegoMerge)):
        blocks = {name: _describe(block) for name, block in model.blocks.items()}
        config = {key: value for key, value in model.config.items() if key != "blocks"}
        input_shapes = {name: description["input_shapes"]["x"] for name, description in blocks.items()}
        return {
            "class": type(model).__name__,
            "config": config,
            "blocks": {name: description["config"] for name, description in blocks.items()},
            "input_shapes": input_shapes,
        }
    raise ValueError(
        f"checkpoints support LegoBlock, LegoMerge and LegoFuse, found {type(model).__name__}"
    )


def save_model(model: nn.Module, path: str | Path) -> tuple[Path, Path]:
    """Write the weights to ``path.safetensors`` and the description to ``path.json``.

    Returns both paths. All parameters and buffers must be real tensors, because
    safetensors stores no complex dtypes. The modules in this package keep them real.
    """
    description = _describe(model)
    description["format_version"] = FORMAT_VERSION
    weights_path, json_path = _paths(path)
    weights_path.parent.mkdir(parents=True, exist_ok=True)
    state = {name: tensor.detach().contiguous().cpu() for name, tensor in model.state_dict().items()}
    complex_names = [name for name, tensor in state.items() if tensor.is_complex()]
    if complex_names:
        raise ValueError(f"safetensors cannot store complex tensors, found {complex_names}")
    save_file(state, str(weights_path))
    json_path.write_text(json.dumps(description, indent=2, sort_keys=True) + "\n")
    logger.info("saved %s checkpoint to %s", description["class"], weights_path)
    return weights_path, json_path


def build_model(description: dict[str, Any]) -> nn.Module:
    """Build an untrained module from a checkpoint description (the parsed JSON)."""
    kind = description.get("class")
    if kind == "LegoBlock":
        return LegoBlock(**description["config"])
    if kind in ("LegoFuse", "LegoMerge"):
        blocks = {name: LegoBlock(**config) for name, config in description["blocks"].items()}
        config = dict(description["config"])
        if kind == "LegoFuse":
            return LegoFuse(blocks=blocks, **config)
        config.pop("modalities", None)
        return LegoMerge(blocks=blocks, **config)
    raise ValueError(f"unknown checkpoint class {kind!r}, expected LegoBlock, LegoMerge or LegoFuse")


def load_state_strict(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load ``state`` into ``model``, raising ValueError that names any missing, extra or mis-shaped tensor."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ValueError(
            f"checkpoint weights do not match the model: missing {missing}, unexpected {unexpected}. "
            f"The JSON and the safetensors file may come from different models"
        )
    for name, tensor in expected.items():
        if tuple(state[name].shape) != tuple(tensor.shape):
            raise ValueError(
                f"parameter {name!r} has shape {tuple(state[name].shape)} in the checkpoint, "
                f"expected {tuple(tensor.shape)} from the JSON description"
            )
    model.load_state_dict(state)


def load_model(path: str | Path) -> nn.Module:
    """Rebuild a module from ``path.json``, load ``path.safetensors`` and return it in eval mode."""
    weights_path, json_path = _paths(path)
    for required in (weights_path, json_path):
        if not required.is_file():
            raise FileNotFoundError(f"checkpoint file not found: {required}")
    description = json.loads(json_path.read_text())
    version = description.get("format_version")
    if version != FORMAT_VERSION:
        raise ValueError(f"checkpoint format_version {version} is not supported, expected {FORMAT_VERSION}")
    model = build_model(description)
    load_state_strict(model, load_file(str(weights_path)))
    model.eval()
    logger.info("loaded %s checkpoint from %s", description["class"], weights_path)
    return model
