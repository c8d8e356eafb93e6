"""Training of survival models with per-epoch early stopping on an inner validation split.

Works for any module that maps a ``SurvivalBatch`` to logits over time bins (B, n_bins):
a LegoBlock, a LegoFuse, or a plain network such as an SNN on concatenated features.
"""

from __future__ import annotations

import logging
import random
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from mmlego.metrics import harrell_c
from mmlego.nn.bags import pad_bags
from mmlego.survival import DEFAULT_ALPHA, nll_survival_loss, risk_score

logger = logging.getLogger(__name__)


@dataclass
class SurvivalBatch:
    """One batch: ``inputs[name] = (x, mask)``, presence (B, K) and survival targets (B,).

    ``x`` is (B, D) for a tabular modality with ``mask`` None, or a zero-padded bag
    (B, N, D) with a boolean ``mask`` (B, N).
    """

    inputs: dict[str, tuple[torch.Tensor, torch.Tensor | None]]
    presence: torch.Tensor
    labels: torch.Tensor
    censorship: torch.Tensor
    times: torch.Tensor

    def to(self, device: torch.device | str) -> SurvivalBatch:
        """Return the batch with every tensor on ``device``."""
        inputs = {
            name: (x.to(device), None if mask is None else mask.to(device)) for name, (x, mask) in self.inputs.items()
        }
        return SurvivalBatch(
            inputs=inputs,
            presence=self.presence.to(device),
            labels=self.labels.to(device),
            censorship=self.censorship.to(device),
            times=self.times.to(device),
        )


def model_device(model: nn.Module) -> torch.device:
    """Device of the model's first parameter (CPU for a model without parameters)."""
    parameter = next(model.parameters(), None)
    return torch.device("cpu") if parameter is None else parameter.device


class SurvivalDataset:
    """Patients with one or more modalities and discrete-time survival targets.

    ``modalities[name]`` is a tabular tensor (P, D) or a list of P bags of shape (n_i, D).
    ``labels`` are time-bin indices (see ``mmlego.survival.assign_bins``), ``censorship``
    is 1 for censored patients. ``presence`` (P, K) defaults to True everywhere except for
    empty bags (n_i = 0).
    """

    def __init__(
        self,
        *,
        modalities: Mapping[str, torch.Tensor | Sequence[torch.Tensor]],
        times: Sequence[float] | np.ndarray | torch.Tensor,
        censorship: Sequence[float] | np.ndarray | torch.Tensor,
        labels: Sequence[int] | np.ndarray | torch.Tensor,
        presence: torch.Tensor | np.ndarray | None = None,
    ) -> None:
        if not modalities:
            raise ValueError("SurvivalDataset needs at least one modality, found none")
        self.times = torch.as_tensor(np.asarray(times, dtype=np.float32))
        self.censorship = torch.as_tensor(np.asarray(censorship, dtype=np.float32))
        self.labels = torch.as_tensor(np.asarray(labels, dtype=np.int64))
        count = self.times.shape[0]
        self.modalities: dict[str, torch.Tensor | list[torch.Tensor]] = {}
        for name, data in modalities.items():
            if isinstance(data, torch.Tensor):
                data = data.float()
            else:
                data = [torch.as_tensor(bag, dtype=torch.float32) for bag in data]
            if len(data) != count:
                raise ValueError(f"modality {name!r} has {len(data)} patients, expected {count}, the number of times")
            self.modalities[name] = data
        if self.censorship.shape[0] != count or self.labels.shape[0] != count:
            raise ValueError(
                f"times, censorship and labels need equal lengths, found {count}, "
                f"{self.censorship.shape[0]} and {self.labels.shape[0]}"
            )
        if presence is None:
            columns = []
            for data in self.modalities.values():
                if isinstance(data, torch.Tensor):
                    columns.append(torch.ones(count, dtype=torch.bool))
                else:
                    columns.append(torch.tensor([bag.shape[0] > 0 for bag in data], dtype=torch.bool))
            presence = torch.stack(columns, dim=1)
        self.presence = torch.as_tensor(presence).to(torch.bool)
        if tuple(self.presence.shape) != (count, len(self.modalities)):
            raise ValueError(
                f"presence must have shape (P, K) = {(count, len(self.modalities))}, found {tuple(self.presence.shape)}"
            )

    @property
    def modality_names(self) -> list[str]:
        return list(self.modalities)

    def __len__(self) -> int:
        return int(self.times.shape[0])

    def subset(self, indices: Sequence[int] | np.ndarray) -> SurvivalDataset:
        """Return the patients at ``indices`` as a new dataset."""
        indices = np.asarray(indices, dtype=np.int64)
        modalities = {}
        for name, data in self.modalities.items():
            modalities[name] = data[torch.as_tensor(indices)] if isinstance(data, torch.Tensor) else [data[i] for i in indices]
        return SurvivalDataset(
            modalities=modalities,
            times=self.times[indices].numpy(),
            censorship=self.censorship[indices].numpy(),
            labels=self.labels[indices].numpy(),
            presence=self.presence[torch.as_tensor(indices)],
        )

    def batch(self, indices: Sequence[int] | np.ndarray | torch.Tensor) -> SurvivalBatch:
        """Collate the patients at ``indices`` into a batch, zero-padding bags and building token masks."""
        indices = torch.as_tensor(np.asarray(indices, dtype=np.int64))
        inputs: dict[str, tuple[torch.Tensor, torch.Tensor | None]] = {}
        for name, data in self.modalities.items():
            if isinstance(data, torch.Tensor):
                inputs[name] = (data[indices], None)
            else:
                inputs[name] = pad_bags([data[int(i)] for i in indices])
        return SurvivalBatch(
            inputs=inputs,
            presence=self.presence[indices],
            labels=self.labels[indices],
            censorship=self.censorship[indices],
            times=self.times[indices],
        )


ForwardFn = Callable[[nn.Module, SurvivalBatch], torch.Tensor]


def default_forward(model: nn.Module, batch: SurvivalBatch) -> torch.Tensor:
    """Call ``model(inputs, presence)`` for a multimodal model, else ``model(x)`` or ``model(x, mask)``.

    A model is multimodal when it has ``multimodal = True`` (LegoMerge, LegoFuse).
    A unimodal model needs a batch with exactly one modality.
    """
    if getattr(model, "multimodal", False):
        return model(batch.inputs, batch.presence)
    if len(batch.inputs) != 1:
        raise ValueError(
            f"a unimodal model needs a dataset with one modality, found {list(batch.inputs)}. "
            f"Build the dataset with one modality or pass forward_fn="
        )
    x, mask = next(iter(batch.inputs.values()))
    return model(x) if mask is None else model(x, mask)


@dataclass
class TrainConfig:
    """Optimiser and early-stopping settings. The defaults suit cohorts of a few hundred patients."""

    lr: float = 1e-3
    weight_decay: float = 1e-4
    batch_size: int = 32
    max_epochs: int = 30
    patience: int = 5
    alpha: float = DEFAULT_ALPHA
    seed: int = 0
    monitor: str = "c_index"
    """Early-stopping quantity on the validation split: ``"c_index"`` (Harrell's C, with the
    loss as fallback when C is NaN) or ``"loss"``."""


@dataclass
class TrainResult:
    """Outcome of ``train_model``: best epoch (1-based), monitored quantity, history, step count."""

    best_epoch: int
    best_score: float
    monitor: str
    gradient_steps: int
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's random number generators."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def predict_logits(
    model: nn.Module, dataset: SurvivalDataset, *, batch_size: int = 256, forward_fn: ForwardFn | None = None
) -> torch.Tensor:
    """Return the model's logits (P, n_bins) for every patient, in eval mode without gradients."""
    forward_fn = forward_fn or default_forward
    was_training = model.training
    model.eval()
    device = model_device(model)
    outputs = []
    with torch.no_grad():
        for start in range(0, len(dataset), batch_size):
            batch = dataset.batch(np.arange(start, min(start + batch_size, len(dataset)))).to(device)
            outputs.append(forward_fn(model, batch).detach().cpu().clone())
    model.train(was_training)
    return torch.cat(outputs)


def _validation_scores(
    model: nn.Module, val: SurvivalDataset, config: TrainConfig, forward_fn: ForwardFn
) -> tuple[float, float]:
    logits = predict_logits(model, val, batch_size=max(config.batch_size, 256), forward_fn=forward_fn)
    val_loss = float(nll_survival_loss(logits, val.labels, val.censorship, alpha=config.alpha))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a degenerate validation split falls back to the loss
        val_c = harrell_c(risk_score(logits).numpy(), val.times.numpy(), val.censorship.numpy())
    return val_loss, val_c


def train_model(
    model: nn.Module,
    train: SurvivalDataset,
    val: SurvivalDataset,
    *,
    config: TrainConfig | None = None,
    fold: int | str = 0,
    forward_fn: ForwardFn | None = None,
    val_metric: Callable[[nn.Module, SurvivalDataset], float] | None = None,
) -> TrainResult:
    """Train ``model`` with Adam on the survival NLL and restore its best epoch's weights.

    After each epoch the validation split is scored: by ``val_metric`` (higher is better)
    when given, otherwise by Harrell's C, or by the validation loss when C is NaN at the
    first epoch (for example a split without events). Training stops after ``patience``
    epochs without improvement. The best weights are kept as cloned tensors and loaded
    back at the end, and the model is left in eval mode. Seeds are set at the start.
    Each epoch logs one line ``fold=K epoch=E loss=... val_c=... seconds=... val_loss=...``.
    """
    config = config or TrainConfig()
    forward_fn = forward_fn or default_forward
    if len(train) == 0 or len(val) == 0:
        raise ValueError(f"training and validation splits must be non-empty, found {len(train)} and {len(val)} patients")
    seed_everything(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    device = model_device(model)  # batches follow the model: move the model first to train on a GPU
    parameters = [p for p in model.parameters() if p.requires_grad]
    if not parameters:
        raise ValueError("the model has no trainable parameters: check the freeze policy")
    optimizer = torch.optim.Adam(parameters, lr=config.lr, weight_decay=config.weight_decay)

    if config.monitor not in ("c_index", "loss"):
        raise ValueError(f"monitor must be 'c_index' or 'loss', found {config.monitor!r}")
    monitor = "val_metric" if val_metric is not None else None
    if monitor is None and config.monitor == "loss":
        monitor = "val_loss"
    best_score = -float("inf")
    best_epoch = 0
    best_state: dict[str, torch.Tensor] | None = None
    gradient_steps = 0
    history: list[dict[str, float]] = []
    started = time.perf_counter()

    for epoch in range(1, config.max_epochs + 1):
        epoch_start = time.perf_counter()
        model.train()
        order = torch.randperm(len(train), generator=generator)
        losses = []
        for start in range(0, len(train), config.batch_size):
            batch = train.batch(order[start : start + config.batch_size]).to(device)
            logits = forward_fn(model, batch)
            loss = nll_survival_loss(logits, batch.labels, batch.censorship, alpha=config.alpha)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            gradient_steps += 1
            losses.append(float(loss.detach()) * len(batch.labels))

        val_loss, val_c = _validation_scores(model, val, config, forward_fn)
        if monitor is None:
            monitor = "val_c_index" if np.isfinite(val_c) else "val_loss"
        if monitor == "val_metric":
            score = float(val_metric(model, val))
        elif monitor == "val_c_index":
            score = val_c if np.isfinite(val_c) else -float("inf")
        else:
            score = -val_loss

        train_loss = sum(losses) / len(train)
        seconds = time.perf_counter() - epoch_start
        history.append({"epoch": epoch, "loss": train_loss, "val_loss": val_loss, "val_c": val_c, "score": score})
        logger.info(
            "fold=%s epoch=%d loss=%.4f val_c=%.4f seconds=%.2f val_loss=%.4f",
            fold, epoch, train_loss, val_c, seconds, val_loss,
        )
        if score > best_score:
            best_score, best_epoch = score, epoch
            best_state = {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}
        elif epoch - best_epoch >= config.patience:
            logger.info("fold=%s early stop at epoch %d, best epoch %d (%s)", fold, epoch, best_epoch, monitor)
            break

    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return TrainResult(
        best_epoch=best_epoch,
        best_score=best_score,
        monitor=monitor or "val_c_index",
        gradient_steps=gradient_steps,
        seconds=time.perf_counter() - started,
        history=history,
    )
