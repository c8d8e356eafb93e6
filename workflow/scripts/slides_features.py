"""Encode a slide's patches: features (N, D) and coords (N, 2) in one HDF5 file."""

from mmlego.logs import setup_logging

setup_logging(snakemake.log[0])

from mmlego.slides.failures import run_features  # noqa: E402
from mmlego.slides.features import FeatureSettings  # noqa: E402

onnx_path = snakemake.input.onnx[0] if snakemake.input.onnx else None
run_features(
    snakemake.input.slide,
    coords_path=snakemake.input.coords,
    output_path=snakemake.output.features,
    slide_id=snakemake.wildcards.slide,
    settings=FeatureSettings(
        **snakemake.params.settings, threads=snakemake.threads, onnx_path=onnx_path
    ),
    on_failure=snakemake.config["slides"]["on_failure"],
)
