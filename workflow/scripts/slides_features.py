"""Encode a slide's patches: features (N, D) and coords (N, 2) in one HDF5 file."""

from mmlego.logs import setup_logging

setup_logging(snakemake.log[0])

from mmlego.slides.features import FeatureSettings, extract_slide_features  # noqa: E402

onnx_path = snakemake.input.onnx[0] if snakemake.input.onnx else None
extract_slide_features(
    snakemake.input.slide,
    snakemake.input.coords,
    snakemake.output.features,
    slide_id=snakemake.wildcards.slide,
    settings=FeatureSettings(
        **snakemake.params.settings, threads=snakemake.threads, onnx_path=onnx_path
    ),
)
