"""MM-Lego for biomedicine: unimodal LegoBlocks merged (LegoMerge) or fine-tuned (LegoFuse)
into a multimodal survival model."""

__version__ = "0.1.0"
