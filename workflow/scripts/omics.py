"""Build one table modality's AnnData for one fold of a cohort."""

from mmlego.logs import setup_logging

setup_logging(snakemake.log[0])

from mmlego.modalities import parse_modality  # noqa: E402
from mmlego.omics import build_omics_output  # noqa: E402

build_omics_output(
    snakemake.input.table,
    snakemake.input.fold,
    snakemake.output[0],
    spec=parse_modality(snakemake.wildcards.modality, snakemake.params.modality),
    n_bins=snakemake.params.n_bins,
)
