"""Export the patch encoder to ONNX once, for the onnxruntime backend of every slide's job."""

from mmlego.logs import setup_logging

setup_logging(snakemake.log[0])

from mmlego.slides.encoders import build_encoder  # noqa: E402
from mmlego.slides.features import write_onnx  # noqa: E402

settings = snakemake.params.settings
encoder = build_encoder(settings["encoder"], settings["checkpoint"])
write_onnx(
    encoder,
    snakemake.output.onnx,
    input_size=encoder.input_size or snakemake.params.input_size,
)
