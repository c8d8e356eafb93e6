"""Write one fold of a cohort: training, inner validation and test case_ids."""

from mmlego.logs import setup_logging

setup_logging(snakemake.log[0])

from mmlego.splits import build_fold_output  # noqa: E402

build_fold_output(
    snakemake.input.cohort,
    snakemake.output[0],
    cohort_name=snakemake.wildcards.cohort,
    split_config=snakemake.params.splits,
    fold=int(snakemake.wildcards.fold),
)
