"""Metrics, summary and plots of one cohort over all methods and folds."""

from mmlego.logs import setup_logging

setup_logging(snakemake.log[0])

from mmlego.stages.report import evaluate_cohort  # noqa: E402

methods, folds = snakemake.params.methods, snakemake.params.folds
paths = iter(snakemake.input.predictions)
prediction_paths = {(method, fold): next(paths) for method in methods for fold in folds}
evaluate_cohort(
    cohort=snakemake.wildcards.cohort,
    prediction_paths=prediction_paths,
    cohort_tsv=snakemake.input.cohort,
    fold_jsons=dict(zip(folds, snakemake.input.folds)),
    metrics_path=snakemake.output.metrics,
    summary_path=snakemake.output.summary,
    c_index_plot=snakemake.output.c_index,
    kaplan_meier_plot=snakemake.output.kaplan_meier,
)
