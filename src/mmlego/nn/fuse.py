"""LegoFuse: fine-tune trained LegoBlocks together by passing one latent through all of them."""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from mmlego.nn.block import LegoBlock
from mmlego.nn.merge import HEAD_MERGES, merge_heads

logger = logging.getLogger(__name__)

FUSE_MODES = ("stack", "weave")
FREEZE_POLICIES = ("none", "encoders", "blocks")


class LegoFuse(nn.Module):
    """Multimodal model that threads one latent through copies of unimodal LegoBlocks.

    ``mode="stack"``: the latent of block 1 is the starting latent of block 2 and so on,
    and each block attends to its own modality with all its layers. ``mode="weave"``: for
    each depth l, layer l of every block is applied in turn to the shared latent, so the
    latent attends to the modalities alternately. Between steps the latent returns from the
    frequency domain with the inverse FFT. The first block's learned latent starts the chain.

    A patient without a modality (``presence[:, k]`` False, or the modality missing from
    ``inputs``) skips that block's steps and keeps its latent. The head maps Re Z (mean over
    latents) to logits (B, n_outputs). It is ``head`` if given, otherwise the blocks' heads
    merged with ``head_merge`` and ``head_weights``, as in LegoMerge.

    ``freeze`` sets what fine-tuning updates: ``"none"`` trains everything, ``"encoders"``
    freezes the blocks' encoders, ``"blocks"`` freezes everything in the blocks (encoders,
    learned latents, attention layers and their heads), so only the fused head trains.
    The blocks are deep-copied, so fine-tuning leaves the unimodal blocks unchanged.
    """

    def __init__(
        self,
        *,
        blocks: Mapping[str, LegoBlock],
        mode: str = "stack",
        freeze: str = "none",
        head: nn.Module | None = None,
        head_weights: Sequence[float] | None = None,
        head_merge: str = "slerp",
    ) -> None:
        super().__init__()
        if mode not in FUSE_MODES:
            raise ValueError(f"mode must be one of {FUSE_MODES}, found {mode!r}")
        if freeze not in FREEZE_POLICIES:
            raise ValueError(f"freeze must be one of {FREEZE_POLICIES}, found {freeze!r}")
        if head_merge not in HEAD_MERGES:
            raise ValueError(f"head_merge must be one of {HEAD_MERGES}, found {head_merge!r}")
        if len(blocks) == 0:
            raise ValueError("LegoFuse needs at least one block, found none")
        settings = {
            name: (block.n_latents, block.latent_dim, block.frequency_domain, block.track_imaginary)
            for name, block in blocks.items()
        }
        if len(set(settings.values())) != 1:
            raise ValueError(
                "all blocks need the same (n_latents, latent_dim, frequency_domain, track_imaginary), "
                f"found {settings}"
            )

        self.modalities = list(blocks)
        self.mode = mode
        self.freeze = freeze
        self.multimodal = True
        self.blocks = nn.ModuleDict({name: copy.deepcopy(block) for name, block in blocks.items()})
        if head is None:
            head = merge_heads([block.head for block in blocks.values()], head_weights, method=head_merge)
        else:
            head = copy.deepcopy(head)
        self.head = head
        self.config: dict[str, Any] = {
            "mode": mode,
            "freeze": freeze,
            "head_merge": head_merge,
            "head_weights": None if head_weights is None else [float(w) for w in head_weights],
            "blocks": {name: dict(block.config) for name, block in blocks.items()},
        }
        self.serialisable = all(block.serialisable for block in blocks.values())
        self._apply_freeze()

    def _apply_freeze(self) -> None:
        for block in self.blocks.values():
            if self.freeze == "encoders":
                block.encoder.requires_grad_(False)
            elif self.freeze == "blocks":
                block.requires_grad_(False)

    def _presence(self, inputs: Mapping[str, object], presence: torch.Tensor | None, batch: int) -> torch.Tensor:
        if presence is None:
            presence = torch.ones((batch, len(self.modalities)), dtype=torch.bool)
        if tuple(presence.shape) != (batch, len(self.modalities)):
            raise ValueError(
                f"presence must have shape (B, K) = {(batch, len(self.modalities))} for modalities "
                f"{self.modalities}, found {tuple(presence.shape)}"
            )
        presence = presence.to(torch.bool).clone()
        for index, name in enumerate(self.modalities):
            if name not in inputs:
                presence[:, index] = False
        return presence

    def encode(
        self, inputs: Mapping[str, tuple[torch.Tensor, torch.Tensor | None]], presence: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Return the fused complex latent (B, n_latents, latent_dim) for ``inputs[name] = (x, mask)``."""
        known = [name for name in inputs if name in self.blocks]
        if not known:
            raise ValueError(f"inputs contain none of the modalities {self.modalities}, found {list(inputs)}")
        batch = inputs[known[0]][0].shape[0]
        presence = self._presence(inputs, presence, batch)

        first = self.blocks[self.modalities[0]]
        current = first.initial_latent(batch)  # (B, L, D) real
        z = first.to_frequency(current)  # the latent of a patient with no modality
        tokens = {name: self.blocks[name].encode_tokens(*inputs[name]) for name in known}

        def step(name: str, index: int | None) -> None:
            nonlocal current, z
            block = self.blocks[name]
            block_tokens, block_mask = tokens[name]
            if index is None:
                z_new = block.encode_from_tokens(block_tokens, block_mask, current)
            else:
                z_new = block.apply_layer(current, block_tokens, block_mask, index)
            keep = presence[:, self.modalities.index(name)][:, None, None]  # (B, 1, 1)
            z = torch.where(keep, z_new, z)
            current = torch.where(keep, block.to_latent(z_new), current)

        if self.mode == "stack":
            for name in self.modalities:
                if name in tokens:
                    step(name, None)
        else:
            max_depth = max(block.depth for block in self.blocks.values())
            for index in range(max_depth):
                for name in self.modalities:
                    if name in tokens and index < self.blocks[name].depth:
                        step(name, index)
        return z

    def forward(
        self, inputs: Mapping[str, tuple[torch.Tensor, torch.Tensor | None]], presence: torch.Tensor | None = None
    ) -> torch.Tensor:
        return self.head(self.encode(inputs, presence).real.mean(dim=1))  # (B, n_outputs)

