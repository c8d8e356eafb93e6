# Every block and latent cache is a target, so a deleted one is rebuilt together with
# what depends on it; waits for checkpoint `cohort`, which decides the modalities.
MODEL_TARGETS = lambda wildcards: [
    f"results/{cohort}/{stage}/{modality}/fold_{fold}.{suffix}"
    for cohort in COHORTS
    for modality in cohort_modalities(cohort)
    for fold in COHORT_FOLDS[cohort]
    for stage, suffix in (("blocks", "safetensors"), ("latents", "h5"))
]


rule train_block:
    input:
        unpack(modality_inputs),
    output:
        weights="results/{cohort}/blocks/{modality}/fold_{fold}.safetensors",
        hyperparameters="results/{cohort}/blocks/{modality}/fold_{fold}.json",
        training="results/{cohort}/blocks/{modality}/fold_{fold}.training.json",
        predictions="results/{cohort}/predictions/block_{modality}/fold_{fold}.tsv",
        record="results/{cohort}/predictions/block_{modality}/fold_{fold}.json",
    log:
        log_path("results/{cohort}/blocks/{modality}/fold_{fold}.safetensors"),
    benchmark:
        "logs/benchmarks/{cohort}/blocks/{modality}/fold_{fold}.tsv"
    wildcard_constraints:
        cohort=COHORT_PATTERN,
        fold=r"\d+",
    conda:
        ENV
    threads: 2
    resources:
        mem_mb=lambda wildcards, attempt: 4096 * attempt,
        runtime=60,
    params:
        block=config["blocks"],
        training=config["training"],
        slides=slide_modality_params,
    script:
        "../scripts/train_block.py"


rule encode_latents:
    input:
        unpack(modality_inputs),
        weights="results/{cohort}/blocks/{modality}/fold_{fold}.safetensors",
        hyperparameters="results/{cohort}/blocks/{modality}/fold_{fold}.json",
    output:
        "results/{cohort}/latents/{modality}/fold_{fold}.h5",
    log:
        log_path("results/{cohort}/latents/{modality}/fold_{fold}.h5"),
    wildcard_constraints:
        cohort=COHORT_PATTERN,
        fold=r"\d+",
    conda:
        ENV
    threads: 2
    resources:
        mem_mb=lambda wildcards, attempt: 4096 * attempt,
        runtime=30,
    params:
        slides=slide_modality_params,
    script:
        "../scripts/encode_latents.py"
