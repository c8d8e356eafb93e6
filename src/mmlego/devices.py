"""Device choice shared by the patch encoder and the training stages."""

from __future__ import annotations

import torch


def pick_device(device: str = "auto") -> torch.device:
    """Resolve ``"auto"`` to CUDA when available, else CPU; pass other names to torch."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)
