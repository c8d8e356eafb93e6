"""Modality encoders that turn raw inputs into tokens for a LegoBlock.

Every encoder maps ``(x (B, N, D_in), mask (B, N))`` to ``(tokens (B, N', D'), mask (B, N'))``
and exposes ``out_features`` (D') and ``config`` (its constructor keyword arguments), so
checkpoints can rebuild it from the registry by name.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn


def _lecun_normal_(linear: nn.Linear) -> None:
    # LeCun normal: N(0, 1 / fan_in), which keeps SELU activations self-normalising.
    nn.init.normal_(linear.weight, mean=0.0, std=1.0 / math.sqrt(linear.in_features))
    if linear.bias is not None:
        nn.init.zeros_(linear.bias)


class SNN(nn.Module):
    """Self-normalising network (Klambauer et al., 2017) applied to each token.

    Layers: Linear -> SELU -> AlphaDropout for every width in ``hidden``, with LeCun
    normal initialisation. Input (B, N, in_features), output (B, N, hidden[-1]). A
    tabular vector is one token (N = 1). Masked tokens are set to zero in the output.
    """

    def __init__(self, *, in_features: int, hidden: Sequence[int] = (256, 128), dropout: float = 0.1) -> None:
        super().__init__()
        hidden = [int(width) for width in hidden]
        if in_features < 1 or not hidden or min(hidden) < 1:
            raise ValueError(
                f"SNN needs in_features >= 1 and at least one hidden width >= 1, "
                f"found in_features={in_features}, hidden={hidden}"
            )
        self.config: dict[str, Any] = {"in_features": int(in_features), "hidden": hidden, "dropout": float(dropout)}
        self.out_features = hidden[-1]
        layers: list[nn.Module] = []
        width_in = in_features
        for width in hidden:
            linear = nn.Linear(width_in, width)
            _lecun_normal_(linear)
            layers += [linear, nn.SELU(), nn.AlphaDropout(dropout)]
            width_in = width
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if mask is None:
            mask = torch.ones(x.shape[:-1], dtype=torch.bool, device=x.device)
        tokens = self.net(x) * mask.unsqueeze(-1).to(x.dtype)  # (B, N, D')
        return tokens, mask


class GatedAttentionMIL(nn.Module):
    """Gated-attention multiple-instance pooling (Ilse et al., 2018) over masked bags.

    A projector (Linear -> ReLU -> Dropout per width in ``hidden``) maps patches
    (B, N, in_features) to (B, N, D'). Gated scores ``w^T (tanh(V h) * sigmoid(U h))`` go
    through a softmax over each bag's own real patches, so padded patches get weight 0
    and an all-padded bag gets all-zero weights and a zero pooled vector (no NaN).

    ``output`` selects the tokens handed to the LegoBlock:

    * ``"pooled"``: the attention-pooled vector as one token, (B, 1, D'), with mask
      True where the bag has at least one real patch. Invariant to patch order.
    * ``"tokens"``: the projected patches (B, N, D') with the input mask.
    * ``"both"``: the pooled token followed by the projected patches, (B, 1 + N, D').
    """

    OUTPUTS = ("pooled", "tokens", "both")

    def __init__(
        self,
        *,
        in_features: int,
        hidden: Sequence[int] = (128,),
        attention_dim: int = 64,
        dropout: float = 0.1,
        output: str = "pooled",
    ) -> None:
        super().__init__()
        hidden = [int(width) for width in hidden]
        if output not in self.OUTPUTS:
            raise ValueError(f"output must be one of {self.OUTPUTS}, found {output!r}")
        if in_features < 1 or not hidden or min(hidden) < 1 or attention_dim < 1:
            raise ValueError(
                f"GatedAttentionMIL needs positive widths, found in_features={in_features}, "
                f"hidden={hidden}, attention_dim={attention_dim}"
            )
        self.config: dict[str, Any] = {
            "in_features": int(in_features),
            "hidden": hidden,
            "attention_dim": int(attention_dim),
            "dropout": float(dropout),
            "output": output,
        }
        self.output = output
        self.out_features = hidden[-1]
        layers: list[nn.Module] = []
        width_in = in_features
        for width in hidden:
            layers += [nn.Linear(width_in, width), nn.ReLU(), nn.Dropout(dropout)]
            width_in = width
        self.projector = nn.Sequential(*layers)
        self.attention_tanh = nn.Linear(width_in, attention_dim)
        self.attention_sigmoid = nn.Linear(width_in, attention_dim)
        self.attention_score = nn.Linear(attention_dim, 1)

    def _project_and_weigh(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        projected = self.projector(x)  # (B, N, D')
        gated = torch.tanh(self.attention_tanh(projected)) * torch.sigmoid(self.attention_sigmoid(projected))
        scores = self.attention_score(gated).squeeze(-1)  # (B, N)
        scores = scores.masked_fill(~mask, float("-inf"))
        weights = torch.softmax(scores, dim=1)  # softmax over each bag's patches, never the batch
        # An all-padded row has softmax(-inf, ..., -inf) = NaN, so it gets zero weights instead.
        weights = torch.where(mask.any(dim=1, keepdim=True), weights, torch.zeros_like(weights))
        return projected, weights

    def attention_weights(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Return the attention weights (B, N) over each bag's patches, with 0 for padded patches."""
        if mask is None:
            mask = torch.ones(x.shape[:-1], dtype=torch.bool, device=x.device)
        return self._project_and_weigh(x, mask)[1]

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if mask is None:
            mask = torch.ones(x.shape[:-1], dtype=torch.bool, device=x.device)
        projected, weights = self._project_and_weigh(x, mask)
        pooled = torch.einsum("bn,bnd->bd", weights, projected).unsqueeze(1)  # (B, 1, D')
        pooled_mask = mask.any(dim=1, keepdim=True)  # (B, 1)
        patch_tokens = projected * mask.unsqueeze(-1).to(projected.dtype)  # (B, N, D'), padding zeroed
        if self.output == "pooled":
            return pooled, pooled_mask
        if self.output == "tokens":
            return patch_tokens, mask
        return torch.cat([pooled, patch_tokens], dim=1), torch.cat([pooled_mask, mask], dim=1)


class IdentityEncoder(nn.Module):
    """Pass tokens (B, N, in_features) through unchanged, with padded tokens set to zero."""

    def __init__(self, *, in_features: int) -> None:
        super().__init__()
        if in_features < 1:
            raise ValueError(f"in_features must be >= 1, found {in_features}")
        self.config: dict[str, Any] = {"in_features": int(in_features)}
        self.out_features = int(in_features)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if mask is None:
            mask = torch.ones(x.shape[:-1], dtype=torch.bool, device=x.device)
        return x * mask.unsqueeze(-1).to(x.dtype), mask


ENCODER_REGISTRY: dict[str, type[nn.Module]] = {
    "snn": SNN,
    "gated_attention_mil": GatedAttentionMIL,
    "identity": IdentityEncoder,
}


def build_encoder(name: str, **kwargs: Any) -> nn.Module:
    """Build an encoder from ``ENCODER_REGISTRY`` by name and keyword arguments."""
    if name not in ENCODER_REGISTRY:
        raise ValueError(f"unknown encoder {name!r}, expected one of {sorted(ENCODER_REGISTRY)}")
    return ENCODER_REGISTRY[name](**kwargs)


def encoder_name(encoder: nn.Module) -> str | None:
    """Return the registry name of an encoder's class, or None for a custom module."""
    for name, cls in ENCODER_REGISTRY.items():
        if type(encoder) is cls:
            return name
    return None
