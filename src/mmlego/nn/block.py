"""LegoBlock: one modality's encoder, a learned latent array and frequency-domain cross-attention."""

from __future__ import annotations

import logging
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mmlego.nn.attention import CrossAttention, FeedForward
from mmlego.nn.encoders import IdentityEncoder, build_encoder, encoder_name

logger = logging.getLogger(__name__)


class LegoLayer(nn.Module):
    """One latent update: pre-norm cross-attention to the tokens, then a pre-norm feed-forward."""

    def __init__(
        self,
        *,
        latent_dim: int,
        token_dim: int,
        heads: int,
        dim_head: int,
        ff_mult: int,
        ff_activation: str,
        attn_dropout: float,
        ff_dropout: float,
    ) -> None:
        super().__init__()
        self.cross_attention = CrossAttention(
            query_dim=latent_dim, context_dim=token_dim, heads=heads, dim_head=dim_head, dropout=attn_dropout
        )
        self.feed_forward = FeedForward(dim=latent_dim, mult=ff_mult, activation=ff_activation, dropout=ff_dropout)

    def forward(self, latent: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        latent = latent + self.cross_attention(latent, tokens, mask)  # (B, L, latent_dim)
        return latent + self.feed_forward(latent)


class LegoBlock(nn.Module):
    """Unimodal MM-Lego block that encodes one modality into a complex latent.

    Input ``x`` is a tabular batch (B, in_features), which becomes one token, or a padded
    bag (B, N, in_features) with a boolean ``mask`` (B, N), True for a real token. The
    encoder turns it into tokens (B, N', token_dim). ``encoder`` is a name from
    ``ENCODER_REGISTRY`` built with ``encoder_kwargs``, None for the identity, or any module
    called as ``encoder(x, mask) -> (tokens, mask)`` whose width is its ``out_features``
    attribute or ``token_dim``.

    Each of ``depth`` layers, with ``frequency_domain=True``:

    1. normalise the latent L (B, n_latents, latent_dim) to unit L2 norm along the latent
       axis (the n_latents axis, dim -2) and take F = FFT(L) along that axis;
    2. update Re F with masked cross-attention to the tokens and a feed-forward layer,
       both pre-norm with residuals, while Im F is kept aside. With ``token_fft=True`` the
       tokens are Re FFT along the token axis, computed over each bag's own real tokens;
    3. between layers, re-attach Im F and return to the latent domain with the inverse FFT
       (real part). After the last layer the block stays in the frequency domain.

    ``encode`` returns the complex latent Z = Re + i Im F, (B, n_latents, latent_dim),
    complex64. ``forward`` returns the head's logits (B, n_outputs): mean of Re Z over the
    latents, LayerNorm, Linear.

    Switches: ``frequency_domain=False`` is a plain Perceiver-style latent cross-attention
    with no normalisation or FFT and a zero imaginary part. ``track_imaginary=False`` drops
    Im F (zero imaginary part everywhere). ``weight_sharing=True`` applies one layer's
    weights at every depth. ``token_fft`` applies only in the frequency domain. Because the
    token FFT depends on token order, set it off for unordered bags with per-patch tokens.

    ``init_seed`` seeds the initial values of the learned latent, the attention layers and
    the head (not the encoder). Blocks built with the same seed and shapes then start from
    the same latent and layers, which keeps their latent spaces and heads comparable for
    LegoMerge. None draws them from the global random state.
    """

    def __init__(
        self,
        *,
        in_features: int,
        encoder: str | nn.Module | None = "snn",
        encoder_kwargs: dict[str, Any] | None = None,
        token_dim: int | None = None,
        n_latents: int = 16,
        latent_dim: int = 32,
        depth: int = 1,
        n_outputs: int = 4,
        heads: int = 1,
        dim_head: int = 32,
        ff_mult: int = 2,
        ff_activation: str = "geglu",
        attn_dropout: float = 0.0,
        ff_dropout: float = 0.1,
        frequency_domain: bool = True,
        track_imaginary: bool = True,
        token_fft: bool = True,
        weight_sharing: bool = False,
        init_seed: int | None = 0,
    ) -> None:
        super().__init__()
        for name, value in (("in_features", in_features), ("n_latents", n_latents), ("latent_dim", latent_dim),
                            ("depth", depth), ("n_outputs", n_outputs)):
            if int(value) < 1:
                raise ValueError(f"{name} must be >= 1, found {value}")
        encoder_kwargs = dict(encoder_kwargs or {})

        if isinstance(encoder, nn.Module):
            self.encoder = encoder
        elif encoder is None:
            self.encoder = IdentityEncoder(in_features=in_features)
        else:
            self.encoder = build_encoder(encoder, in_features=in_features, **encoder_kwargs)
        if token_dim is None:
            token_dim = getattr(self.encoder, "out_features", None)
            if token_dim is None:
                raise ValueError(
                    "token_dim is missing: pass token_dim= for an encoder without an out_features attribute"
                )

        self.in_features = int(in_features)
        self.token_dim = int(token_dim)
        self.n_latents = int(n_latents)
        self.latent_dim = int(latent_dim)
        self.depth = int(depth)
        self.n_outputs = int(n_outputs)
        self.frequency_domain = bool(frequency_domain)
        self.track_imaginary = bool(track_imaginary)
        self.token_fft = bool(token_fft)
        self.weight_sharing = bool(weight_sharing)

        layer_kwargs = dict(
            latent_dim=self.latent_dim, token_dim=self.token_dim, heads=heads, dim_head=dim_head,
            ff_mult=ff_mult, ff_activation=ff_activation, attn_dropout=attn_dropout, ff_dropout=ff_dropout,
        )
        # With weight sharing one layer module is stored once and reused at every depth.
        n_modules = 1 if self.weight_sharing else self.depth
        # fork_rng keeps the seeded initialisation from changing the caller's random state.
        with torch.random.fork_rng(enabled=init_seed is not None):
            if init_seed is not None:
                torch.manual_seed(int(init_seed))
            self.latent = nn.Parameter(torch.randn(self.n_latents, self.latent_dim))
            self.layers = nn.ModuleList([LegoLayer(**layer_kwargs) for _ in range(n_modules)])
            self.head = nn.Sequential(nn.LayerNorm(self.latent_dim), nn.Linear(self.latent_dim, self.n_outputs))

        name = encoder_name(self.encoder)
        self.config: dict[str, Any] = {
            "in_features": self.in_features,
            "encoder": name,
            "encoder_kwargs": {k: v for k, v in getattr(self.encoder, "config", {}).items() if k != "in_features"},
            "token_dim": self.token_dim,
            "n_latents": self.n_latents,
            "latent_dim": self.latent_dim,
            "depth": self.depth,
            "n_outputs": self.n_outputs,
            "heads": int(heads),
            "dim_head": int(dim_head),
            "ff_mult": int(ff_mult),
            "ff_activation": ff_activation,
            "attn_dropout": float(attn_dropout),
            "ff_dropout": float(ff_dropout),
            "frequency_domain": self.frequency_domain,
            "track_imaginary": self.track_imaginary,
            "token_fft": self.token_fft,
            "weight_sharing": self.weight_sharing,
            "init_seed": init_seed,
        }
        # A custom encoder module cannot be rebuilt from the config, so checkpoints reject it.
        self.serialisable = name is not None

    def layer(self, index: int) -> LegoLayer:
        """Return the layer applied at depth ``index`` (the shared layer under weight sharing)."""
        if not 0 <= index < self.depth:
            raise ValueError(f"layer index must be in [0, {self.depth}), found {index}")
        return self.layers[0 if self.weight_sharing else index]

    # Domain changes ---------------------------------------------------------------------

    def to_frequency(self, latent: torch.Tensor) -> torch.Tensor:
        """Map a real latent (B, L, D) to the complex frequency-domain latent (B, L, D).

        In the frequency domain this normalises along the latent axis and applies the FFT
        along it; without tracking the imaginary part is zeroed. With the frequency domain
        off the latent is returned as a complex tensor with zero imaginary part.
        """
        if not self.frequency_domain:
            return torch.complex(latent, torch.zeros_like(latent))
        spectrum = torch.fft.fft(F.normalize(latent, p=2.0, dim=-2), dim=-2)  # (B, L, D) complex
        if not self.track_imaginary:
            spectrum = torch.complex(spectrum.real, torch.zeros_like(spectrum.real))
        return spectrum.to(torch.complex64)

    def to_latent(self, z: torch.Tensor) -> torch.Tensor:
        """Map a complex latent (B, L, D) back to a real latent: inverse FFT real part, or Re Z."""
        if not self.frequency_domain:
            return z.real
        return torch.fft.ifft(z, dim=-2).real

    # Forward pieces ---------------------------------------------------------------------

    def encode_tokens(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode the input into tokens (B, N', token_dim) and their mask (B, N')."""
        if x.dim() == 2:
            x = x.unsqueeze(1)  # (B, 1, D): a tabular vector is one token
            if mask is not None and mask.dim() == 1:
                mask = mask.unsqueeze(1)
        if x.dim() != 3:
            raise ValueError(f"input must have shape (B, D) or (B, N, D), found {tuple(x.shape)}")
        if x.shape[-1] != self.in_features:
            raise ValueError(f"input must have {self.in_features} features, found {x.shape[-1]}")
        if mask is None:
            mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
        if mask.shape != x.shape[:2]:
            raise ValueError(f"mask must have shape (B, N) = {tuple(x.shape[:2])}, found {tuple(mask.shape)}")
        mask = mask.to(torch.bool)

        tokens, mask = self.encoder(x * mask.unsqueeze(-1).to(x.dtype), mask)  # (B, N', token_dim)
        if self.frequency_domain and self.token_fft:
            tokens = masked_token_fft(tokens, mask)
        return tokens, mask

    def initial_latent(self, batch_size: int, latent: torch.Tensor | None = None) -> torch.Tensor:
        """Return the real starting latent (B, n_latents, latent_dim).

        Without ``latent`` it is the learned latent broadcast over the batch. A real
        ``latent`` is used as given. A complex one is read as a frequency-domain latent
        (another block's output) and mapped back with ``to_latent``. The parameter itself
        is never written to.
        """
        if latent is None:
            return self.latent.unsqueeze(0).expand(batch_size, -1, -1)
        expected = (batch_size, self.n_latents, self.latent_dim)
        if tuple(latent.shape) != expected:
            raise ValueError(f"latent must have shape (B, n_latents, latent_dim) = {expected}, found {tuple(latent.shape)}")
        if latent.is_complex():
            return self.to_latent(latent)
        return latent

    def apply_layer(
        self, latent: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor, index: int
    ) -> torch.Tensor:
        """Apply layer ``index`` to a real latent (B, L, D); return the complex latent (B, L, D)."""
        spectrum = self.to_frequency(latent)
        updated = self.layer(index)(spectrum.real, tokens, mask)  # cross-attention reads only Re F
        return torch.complex(updated, spectrum.imag)

    def encode(
        self, x: torch.Tensor, mask: torch.Tensor | None = None, *, latent: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Return the complex latent Z (B, n_latents, latent_dim), complex64."""
        tokens, mask = self.encode_tokens(x, mask)
        return self.encode_from_tokens(tokens, mask, self.initial_latent(tokens.shape[0], latent))

    def encode_from_tokens(self, tokens: torch.Tensor, mask: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
        """Apply all layers to encoded tokens (B, N', token_dim), starting from a real latent."""
        current = latent
        for index in range(self.depth):
            z = self.apply_layer(current, tokens, mask, index)
            if index < self.depth - 1:
                current = self.to_latent(z)
        return z

    def predict_from_latent(self, z: torch.Tensor) -> torch.Tensor:
        """Apply the head to Re Z: mean over latents, LayerNorm, Linear -> (B, n_outputs)."""
        return self.head(z.real.mean(dim=1))

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None = None, *, latent: torch.Tensor | None = None
    ) -> torch.Tensor:
        return self.predict_from_latent(self.encode(x, mask, latent=latent))


def masked_token_fft(tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Return Re FFT of the tokens (B, N, D) along the token axis, per bag over its real tokens.

    A padded batch is transformed bag by bag, so the result for a bag does not depend on
    how much padding the batch adds. Padded positions stay zero.
    """
    if bool(mask.all()):
        return torch.fft.fft(tokens, dim=1).real
    rows = []
    for row_tokens, row_mask in zip(tokens, mask):
        row = torch.zeros_like(row_tokens)  # (N, D)
        if bool(row_mask.any()):
            row[row_mask] = torch.fft.fft(row_tokens[row_mask], dim=0).real
        rows.append(row)
    return torch.stack(rows)
