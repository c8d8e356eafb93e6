rule legomerge:
    input:
        unpack(latent_caches),
        fold="results/{cohort}/splits/fold_{fold}.json",
    output:
        **prediction_outputs("legomerge"),
    log:
        log_path("results/{cohort}/predictions/legomerge/fold_{fold}.tsv"),
    wildcard_constraints:
        cohort=COHORT_PATTERN,
        fold=r"\d+",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=lambda wildcards, attempt: 2048 * attempt,
        runtime=15,
    params:
        modalities=lambda wildcards: model_modalities(wildcards.cohort),
        merge=config["merge"],
    script:
        "../scripts/legomerge.py"


rule legofuse:
    input:
        unpack(all_modality_inputs),
        weights=lambda wildcards: list(block_weights(wildcards).values()),
    output:
        **prediction_outputs("legofuse"),
    log:
        log_path("results/{cohort}/predictions/legofuse/fold_{fold}.tsv"),
    benchmark:
        "logs/benchmarks/{cohort}/legofuse/fold_{fold}.tsv"
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
        modalities=lambda wildcards: model_modalities(wildcards.cohort),
        fuse=config["fuse"],
        training=config["training"],
        slides=slide_modality_params,
    script:
        "../scripts/legofuse.py"


rule early_fusion:
    input:
        unpack(all_modality_inputs),
    output:
        **prediction_outputs("early_fusion"),
    log:
        log_path("results/{cohort}/predictions/early_fusion/fold_{fold}.tsv"),
    benchmark:
        "logs/benchmarks/{cohort}/early_fusion/fold_{fold}.tsv"
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
        modalities=lambda wildcards: model_modalities(wildcards.cohort),
        network=config["baselines"]["early_fusion"],
        training=config["training"],
        slides=slide_modality_params,
    script:
        "../scripts/early_fusion.py"


rule coxnet:
    input:
        unpack(all_modality_inputs),
    output:
        **prediction_outputs("coxnet"),
    log:
        log_path("results/{cohort}/predictions/coxnet/fold_{fold}.tsv"),
    benchmark:
        "logs/benchmarks/{cohort}/coxnet/fold_{fold}.tsv"
    wildcard_constraints:
        cohort=COHORT_PATTERN,
        fold=r"\d+",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=lambda wildcards, attempt: 4096 * attempt,
        runtime=60,
    params:
        modalities=lambda wildcards: model_modalities(wildcards.cohort),
        coxnet=config["baselines"]["coxnet"],
        slides=slide_modality_params,
    script:
        "../scripts/coxnet.py"


rule late_fusion:
    input:
        block_predictions,
    output:
        **prediction_outputs("late_fusion"),
    log:
        log_path("results/{cohort}/predictions/late_fusion/fold_{fold}.tsv"),
    wildcard_constraints:
        cohort=COHORT_PATTERN,
        fold=r"\d+",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=lambda wildcards, attempt: 1024 * attempt,
        runtime=10,
    script:
        "../scripts/late_fusion.py"
