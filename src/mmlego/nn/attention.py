"""Pre-norm cross-attention and feed-forward layers in the style of a Perceiver.

Both modules return the update only, and the caller adds the residual, so
``latent = latent + attention(latent, tokens, mask)`` is one Perceiver sub-layer.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class CrossAttention(nn.Module):
    """Pre-norm multi-head cross-attention from latent queries to masked tokens.

    Inputs: ``latent`` (B, L, query_dim), ``tokens`` (B, N, context_dim) and an optional
    boolean ``mask`` (B, N), True for a real token. Output: the update (B, L, query_dim).
    Masked tokens get no attention weight. A row whose tokens are all masked has nothing
    to attend to and gets a zero update instead of the NaN a softmax over no keys gives.
    """

    def __init__(
        self,
        *,
        query_dim: int,
        context_dim: int,
        heads: int = 1,
        dim_head: int = 64,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if heads < 1 or dim_head < 1:
            raise ValueError(f"heads and dim_head must be >= 1, found heads={heads}, dim_head={dim_head}")
        inner_dim = heads * dim_head
        self.heads = heads
        self.dim_head = dim_head
        self.dropout = dropout
        self.norm_query = nn.LayerNorm(query_dim)
        self.norm_context = nn.LayerNorm(context_dim)
        self.to_q = nn.Linear(query_dim, inner_dim, bias=False)
        self.to_kv = nn.Linear(context_dim, 2 * inner_dim, bias=False)
        self.to_out = nn.Linear(inner_dim, query_dim)

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, _ = x.shape
        return x.view(batch, length, self.heads, self.dim_head).transpose(1, 2)  # (B, H, len, d)

    def forward(
        self, latent: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        batch, n_queries, _ = latent.shape
        n_tokens = tokens.shape[1]
        if mask is None:
            mask = torch.ones((batch, n_tokens), dtype=torch.bool, device=tokens.device)
        if mask.shape != (batch, n_tokens):
            raise ValueError(
                f"token mask must have shape (B, N) = {(batch, n_tokens)}, found {tuple(mask.shape)}"
            )

        queries = self.to_q(self.norm_query(latent))  # (B, L, H*d)
        keys, values = self.to_kv(self.norm_context(tokens)).chunk(2, dim=-1)  # (B, N, H*d) each
        queries, keys, values = (self._split_heads(t) for t in (queries, keys, values))

        # A softmax over no keys is NaN, so empty rows attend to their padding and are zeroed below.
        empty_rows = ~mask.any(dim=-1)  # (B,)
        safe_mask = mask | empty_rows[:, None]
        attn_mask = safe_mask[:, None, None, :]  # (B, 1, 1, N), broadcast over heads and queries
        attended = F.scaled_dot_product_attention(
            queries,
            keys,
            values,
            attn_mask=attn_mask,
            dropout_p=self.dropout if self.training else 0.0,
        )  # (B, H, L, d)
        attended = attended.transpose(1, 2).reshape(batch, n_queries, self.heads * self.dim_head)
        update = self.to_out(attended)  # (B, L, query_dim)
        return update * (~empty_rows).to(update.dtype)[:, None, None]


class FeedForward(nn.Module):
    """Pre-norm position-wise feed-forward network, (B, L, dim) -> (B, L, dim) update.

    ``activation="geglu"`` uses a gated GELU unit (value * GELU(gate)); ``"gelu"`` a plain GELU.
    """

    def __init__(self, *, dim: int, mult: int = 2, activation: str = "geglu", dropout: float = 0.0) -> None:
        super().__init__()
        if activation not in ("geglu", "gelu"):
            raise ValueError(f"activation must be 'geglu' or 'gelu', found {activation!r}")
        hidden = dim * mult
        self.activation = activation
        self.norm = nn.LayerNorm(dim)
        self.proj_in = nn.Linear(dim, 2 * hidden if activation == "geglu" else hidden)
        self.dropout = nn.Dropout(dropout)
        self.proj_out = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.proj_in(self.norm(x))  # (B, L, hidden) or (B, L, 2*hidden)
        if self.activation == "geglu":
            value, gate = hidden.chunk(2, dim=-1)
            hidden = value * F.gelu(gate)
        else:
            hidden = F.gelu(hidden)
        return self.proj_out(self.dropout(hidden))  # (B, L, dim)
