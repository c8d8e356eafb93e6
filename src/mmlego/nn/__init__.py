"""Neural network modules of MM-Lego: encoders, attention layers, LegoBlock, LegoMerge, LegoFuse."""

from mmlego.nn.attention import CrossAttention, FeedForward
from mmlego.nn.bags import pad_bags
from mmlego.nn.block import LegoBlock, LegoLayer, masked_token_fft
from mmlego.nn.encoders import ENCODER_REGISTRY, SNN, GatedAttentionMIL, IdentityEncoder, build_encoder
from mmlego.nn.fuse import FREEZE_POLICIES, FUSE_MODES, LegoFuse
from mmlego.nn.merge import LegoMerge, merge_heads, merge_latents, merge_tensors, slerp

__all__ = [
    "CrossAttention",
    "ENCODER_REGISTRY",
    "FREEZE_POLICIES",
    "FUSE_MODES",
    "FeedForward",
    "GatedAttentionMIL",
    "IdentityEncoder",
    "LegoBlock",
    "LegoFuse",
    "LegoLayer",
    "LegoMerge",
    "SNN",
    "build_encoder",
    "masked_token_fft",
    "merge_heads",
    "merge_latents",
    "merge_tensors",
    "pad_bags",
    "slerp",
]
