"""LegoMerge: combine trained LegoBlocks into a multimodal model without gradient steps.

Latent merge (per patient, over the set S of modalities the patient has, weights w_k):

* ``harmonic``: magnitude |Z| = sum_S w_k / sum_S (w_k / (|Z_k| + eps)), phase the circular
  mean angle(sum_S w_k exp(i angle(Z_k))), Z = |Z| exp(i phase);
* ``sum``: sum_S Z_k;
* ``mean``: sum_S w_k Z_k / sum_S w_k.

Head merge, parameter by parameter with weights normalised over the heads: ``linear``
interpolation, or ``slerp`` applied sequentially with cumulative weights (see
``merge_tensors``).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from mmlego.nn.block import LegoBlock

logger = logging.getLogger(__name__)

LATENT_MERGES = ("harmonic", "sum", "mean")
HEAD_MERGES = ("slerp", "linear")


def _as_weights(weights: Sequence[float] | torch.Tensor | None, count: int) -> torch.Tensor:
    if weights is None:
        return torch.ones(count)
    weights = torch.as_tensor(weights, dtype=torch.float32).flatten()
    if weights.numel() != count:
        raise ValueError(f"expected {count} weights, one per modality, found {weights.numel()}")
    if bool((weights < 0).any()) or float(weights.sum()) <= 0:
        raise ValueError(f"weights must be non-negative with a positive sum, found {weights.tolist()}")
    return weights


def merge_latents(
    latents: torch.Tensor | Sequence[torch.Tensor],
    presence: torch.Tensor | None = None,
    weights: Sequence[float] | torch.Tensor | None = None,
    *,
    method: str = "harmonic",
    eps: float = 1e-6,
) -> torch.Tensor:
    """Merge complex latents (B, K, L, D), or K tensors (B, L, D), into one (B, L, D) complex64.

    ``presence`` (B, K) is True where a patient has modality k. Absent modalities are left
    out of every sum, so any subset works. A patient with no modality gets a zero latent.
    ``weights`` (K,) defaults to equal weights.
    """
    if method not in LATENT_MERGES:
        raise ValueError(f"latent merge method must be one of {LATENT_MERGES}, found {method!r}")
    if not isinstance(latents, torch.Tensor):
        latents = torch.stack(list(latents), dim=1)
    if latents.dim() != 4:
        raise ValueError(f"latents must have shape (B, K, L, D), found {tuple(latents.shape)}")
    latents = latents.to(torch.complex64)
    batch, count = latents.shape[:2]
    if presence is None:
        presence = torch.ones((batch, count), dtype=torch.bool, device=latents.device)
    if tuple(presence.shape) != (batch, count):
        raise ValueError(f"presence must have shape (B, K) = {(batch, count)}, found {tuple(presence.shape)}")

    weights = _as_weights(weights, count).to(latents.device)
    active = weights[None, :] * presence.to(torch.float32)  # (B, K): w_k where present, else 0
    active = active[:, :, None, None]  # (B, K, 1, 1)
    total = active.sum(dim=1)  # (B, 1, 1)
    has_any = total > 0

    if method == "sum":
        return (latents * presence[:, :, None, None]).sum(dim=1)
    if method == "mean":
        merged = (latents * active).sum(dim=1) / total.clamp_min(1e-12)
        return torch.where(has_any, merged, torch.zeros_like(merged))

    magnitude_k = latents.abs()  # (B, K, L, D)
    magnitude = total / (active / (magnitude_k + eps)).sum(dim=1).clamp_min(1e-30)  # weighted harmonic mean
    unit = torch.polar(torch.ones_like(magnitude_k), latents.angle())  # exp(i angle(Z_k))
    phase = (unit * active).sum(dim=1).angle()  # circular mean of the angles
    merged = torch.polar(magnitude, phase)
    return torch.where(has_any, merged, torch.zeros_like(merged))


def slerp(start: torch.Tensor, end: torch.Tensor, weight: float, *, eps: float = 1e-6) -> torch.Tensor:
    """Spherically interpolate two tensors: ``weight`` 0 returns ``start``, 1 returns ``end``.

    The directions start/|start| and end/|end| (flattened) are slerped and the result is
    scaled by the linearly interpolated norm. When a norm is below ``eps`` or the directions
    are (anti-)parallel within ``eps``, it falls back to linear interpolation, so identical
    tensors give themselves back without NaN.
    """
    if start.shape != end.shape:
        raise ValueError(f"slerp needs equal shapes, found {tuple(start.shape)} and {tuple(end.shape)}")
    weight = float(weight)
    linear = (1.0 - weight) * start + weight * end
    start_norm = start.norm()
    end_norm = end.norm()
    if float(start_norm) < eps or float(end_norm) < eps:
        return linear
    start_unit = start / start_norm
    end_unit = end / end_norm
    cosine = torch.clamp((start_unit * end_unit).sum(), -1.0, 1.0)
    angle = torch.arccos(cosine)
    sine = torch.sin(angle)
    if float(sine) < eps:
        return linear
    direction = (torch.sin((1.0 - weight) * angle) / sine) * start_unit + (torch.sin(weight * angle) / sine) * end_unit
    norm = (1.0 - weight) * start_norm + weight * end_norm
    return direction * norm


def merge_tensors(
    tensors: Sequence[torch.Tensor], weights: Sequence[float] | torch.Tensor | None = None, *, method: str = "slerp"
) -> torch.Tensor:
    """Merge N tensors of one shape with weights normalised to sum to 1.

    ``linear`` returns the weighted mean. ``slerp`` folds the tensors in order: the running
    result R_1 = T_1 with cumulative weight W_1 = w_1, then R_k = slerp(R_{k-1}, T_k, w_k / W_k)
    with W_k = W_{k-1} + w_k. For two tensors this is slerp(T_1, T_2, w_2); with linear
    interpolation in place of slerp the fold is exactly the weighted mean. The slerp fold
    depends on the order of the tensors when N > 2.
    """
    if method not in HEAD_MERGES:
        raise ValueError(f"tensor merge method must be one of {HEAD_MERGES}, found {method!r}")
    if len(tensors) == 0:
        raise ValueError("merge_tensors needs at least one tensor, found none")
    weights = _as_weights(weights, len(tensors))
    weights = weights / weights.sum()
    if method == "linear":
        return sum(float(w) * t for w, t in zip(weights, tensors))

    result = tensors[0]
    cumulative = float(weights[0])
    for weight, tensor in zip(weights[1:], tensors[1:]):
        cumulative += float(weight)
        if cumulative <= 0:
            continue
        step = float(weight) / cumulative
        result = slerp(result, tensor, step) if cumulative > float(weight) else tensor.clone()
    return result


def merge_heads(
    heads: Sequence[nn.Module], weights: Sequence[float] | torch.Tensor | None = None, *, method: str = "slerp"
) -> nn.Module:
    """Return a new head whose parameters merge the heads' parameters one by one.

    All heads must have the same parameter names and shapes. The inputs stay unchanged.
    """
    if len(heads) == 0:
        raise ValueError("merge_heads needs at least one head, found none")
    states = [head.state_dict() for head in heads]
    for index, state in enumerate(states[1:], start=1):
        for name, tensor in states[0].items():
            if name not in state or state[name].shape != tensor.shape:
                found = None if name not in state else tuple(state[name].shape)
                raise ValueError(
                    f"head {index} cannot be merged: parameter {name!r} expected shape "
                    f"{tuple(tensor.shape)}, found {found}; build all blocks with the same "
                    f"latent_dim and n_outputs"
                )
    merged = copy.deepcopy(heads[0])
    with torch.no_grad():
        merged_state = {
            name: merge_tensors([state[name].float() for state in states], weights, method=method).to(tensor.dtype)
            for name, tensor in states[0].items()
        }
        merged.load_state_dict(merged_state)
    return merged


class LegoMerge(nn.Module):
    """Multimodal model merged from trained LegoBlocks with zero gradient steps.

    Each block encodes its own modality into a complex latent (B, n_latents, latent_dim).
    The latents of the modalities a patient has (``presence`` (B, K), in the order of
    ``blocks``) are merged by ``method``, and the merged head (``head_merge`` over the
    blocks' heads, same ``weights``) maps Re Z to logits (B, n_outputs). The blocks are
    used as given, not copied, and are put in eval mode (``train()`` keeps eval mode).
    Prediction runs under ``torch.inference_mode``.
    ``gradient_steps`` is 0 and stays 0.
    """

    def __init__(
        self,
        *,
        blocks: Mapping[str, LegoBlock],
        weights: Mapping[str, float] | Sequence[float] | None = None,
        method: str = "harmonic",
        head_merge: str = "slerp",
        eps: float = 1e-6,
    ) -> None:
        super().__init__()
        if len(blocks) == 0:
            raise ValueError("LegoMerge needs at least one block, found none")
        if method not in LATENT_MERGES:
            raise ValueError(f"method must be one of {LATENT_MERGES}, found {method!r}")
        if head_merge not in HEAD_MERGES:
            raise ValueError(f"head_merge must be one of {HEAD_MERGES}, found {head_merge!r}")

        self.modalities = list(blocks)
        shapes = {name: (block.n_latents, block.latent_dim) for name, block in blocks.items()}
        if len(set(shapes.values())) != 1:
            raise ValueError(f"all blocks need the same (n_latents, latent_dim), found {shapes}")
        if isinstance(weights, Mapping):
            missing = [name for name in self.modalities if name not in weights]
            if missing:
                raise ValueError(f"weights are missing for modalities {missing}")
            weights = [float(weights[name]) for name in self.modalities]

        self.register_buffer("weights", _as_weights(weights, len(self.modalities)))
        self.method = method
        self.head_merge = head_merge
        self.eps = float(eps)
        self.blocks = nn.ModuleDict(dict(blocks))
        self.gradient_steps = 0
        self.multimodal = True
        with torch.no_grad():
            self.head = merge_heads(
                [block.head for block in blocks.values()], self.weights, method=head_merge
            )
        self.config = {"method": method, "head_merge": head_merge, "eps": self.eps,
                       "weights": self.weights.tolist(), "modalities": self.modalities}

        self.eval()
        logger.info("LegoMerge built from %s with method=%s head_merge=%s", self.modalities, method, head_merge)

    def train(self, mode: bool = True) -> LegoMerge:
        """Keep LegoMerge and its blocks in eval mode: a merge is never trained, so dropout stays off."""
        return super().train(False)

    def _presence(self, inputs: Mapping[str, object], presence: torch.Tensor | None, batch: int) -> torch.Tensor:
        if presence is None:
            columns = [torch.full((batch,), name in inputs, dtype=torch.bool) for name in self.modalities]
            return torch.stack(columns, dim=1)
        if tuple(presence.shape) != (batch, len(self.modalities)):
            raise ValueError(
                f"presence must have shape (B, K) = {(batch, len(self.modalities))} for modalities "
                f"{self.modalities}, found {tuple(presence.shape)}"
            )
        return presence.to(torch.bool)

    def encode(
        self, inputs: Mapping[str, tuple[torch.Tensor, torch.Tensor | None]], presence: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Return the merged complex latent (B, n_latents, latent_dim) for ``inputs[name] = (x, mask)``."""
        known = [name for name in inputs if name in self.blocks]
        if not known:
            raise ValueError(f"inputs contain none of the modalities {self.modalities}, found {list(inputs)}")
        batch = inputs[known[0]][0].shape[0]
        presence = self._presence(inputs, presence, batch).clone()
        reference = self.blocks[self.modalities[0]]
        with torch.inference_mode():
            latents = []
            for index, name in enumerate(self.modalities):
                if name in inputs:
                    x, mask = inputs[name]
                    latents.append(self.blocks[name].encode(x, mask))
                else:
                    presence[:, index] = False
                    latents.append(torch.zeros((batch, reference.n_latents, reference.latent_dim), dtype=torch.complex64))
            return merge_latents(torch.stack(latents, dim=1), presence, self.weights, method=self.method, eps=self.eps)

    def forward(
        self, inputs: Mapping[str, tuple[torch.Tensor, torch.Tensor | None]], presence: torch.Tensor | None = None
    ) -> torch.Tensor:
        with torch.inference_mode():
            z = self.encode(inputs, presence)
            return self.head(z.real.mean(dim=1))  # (B, n_outputs)
