"""Encode every patient with the modality into the latent cache of one (cohort, modality, fold)."""

from mmlego.logs import setup_logging

setup_logging(snakemake.log[0])

import torch  # noqa: E402

from mmlego.stages.blocks import encode_latents, load_block, write_latent_cache  # noqa: E402
from mmlego.stages.inputs import load_job_modality  # noqa: E402

torch.set_num_threads(snakemake.threads)
modality = snakemake.wildcards.modality
data = load_job_modality(modality, snakemake.input, snakemake.params.slides)
block = load_block(snakemake.input.weights)
case_ids, latents = encode_latents(block, data)
write_latent_cache(
    snakemake.output[0],
    case_ids,
    latents,
    block,
    fold=int(snakemake.wildcards.fold),
    modality=modality,
    inner_edges=data.inner_edges,
    block_path=snakemake.input.weights,
)
