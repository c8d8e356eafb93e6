"""Validate a slide's pre-extracted CLAM/TRIDENT features and copy them to results/features/precomputed/."""

from mmlego.logs import setup_logging

setup_logging(snakemake.log[0])

from mmlego.slides.precomputed import import_precomputed  # noqa: E402

import_precomputed(
    snakemake.input.features,
    snakemake.output.features,
    slide_id=snakemake.wildcards.slide,
)
