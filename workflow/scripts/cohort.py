"""Write a cohort's cohort.tsv and modalities.json from its table."""

from mmlego.logs import setup_logging

setup_logging(snakemake.log[0])

from mmlego.cohort import write_cohort_files  # noqa: E402

write_cohort_files(
    snakemake.input.table,
    snakemake.output.cohort,
    snakemake.output.modalities,
    cohort_name=snakemake.wildcards.cohort,
    cohort_config=snakemake.params.cohort,
    modalities_config=snakemake.params.modalities,
)
