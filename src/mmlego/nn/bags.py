"""Padding of ragged bags (slides as bags of patch features) into one batch tensor."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def pad_bags(bags: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack bags of shape (n_i, D) into zero-padded (B, N, D) and a token mask (B, N).

    N is the longest bag in the batch (at least 1, so an all-empty batch still has one
    padded position). ``mask[b, j]`` is True for a real token. A bag with no tokens,
    shape (0, D), stands for a patient without this modality and gets an all-False row.
    """
    if len(bags) == 0:
        raise ValueError("pad_bags needs at least one bag, found an empty sequence")
    widths = {bag.shape[-1] for bag in bags}
    for index, bag in enumerate(bags):
        if bag.dim() != 2:
            raise ValueError(
                f"bag {index} must have shape (n_tokens, D), found {tuple(bag.shape)}"
            )
    if len(widths) != 1:
        raise ValueError(f"all bags must share the feature width D, found widths {sorted(widths)}")

    width = widths.pop()
    longest = max(1, max(bag.shape[0] for bag in bags))
    reference = bags[0]
    padded = reference.new_zeros((len(bags), longest, width))  # (B, N, D)
    mask = torch.zeros((len(bags), longest), dtype=torch.bool, device=reference.device)
    for index, bag in enumerate(bags):
        n_tokens = bag.shape[0]
        padded[index, :n_tokens] = bag
        mask[index, :n_tokens] = True
    return padded, mask
