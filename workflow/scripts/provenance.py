"""Package versions, config and input checksums recorded with a cohort's results."""

from mmlego.logs import setup_logging

setup_logging(snakemake.log[0])

from mmlego.stages.report import write_provenance  # noqa: E402

write_provenance(snakemake.output[0], config=snakemake.params.config, data_files=list(snakemake.input))
