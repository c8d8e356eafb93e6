"""Train the LegoBlock of one (cohort, modality, fold) and predict with it alone."""

from mmlego.logs import setup_logging

setup_logging(snakemake.log[0])

import torch  # noqa: E402

from mmlego.stages.blocks import save_block, train_block, write_block_predictions  # noqa: E402
from mmlego.stages.inputs import load_job_modality  # noqa: E402

torch.set_num_threads(snakemake.threads)
fold = int(snakemake.wildcards.fold)
data = load_job_modality(snakemake.wildcards.modality, snakemake.input, snakemake.params.slides)
block, summary = train_block(
    data, fold=fold, block_options=snakemake.params.block, train_options=snakemake.params.training
)
save_block(block, summary, snakemake.output.weights, snakemake.output.training)
write_block_predictions(block, data, fold, snakemake.output.predictions, summary["seconds"])
