TABLE_MODALITIES = [
    name for name, spec in MODALITY_SPECS.items() if spec.kind == "table"
]

# Every kept table modality's AnnData for every cohort and fold; waits for checkpoint
# `cohort`, which decides which modalities a cohort keeps.
OMICS_TARGETS = lambda wildcards: [
    f"results/{cohort}/modalities/{modality}/fold_{k}.h5ad"
    for cohort in COHORTS
    for modality in cohort_modalities(cohort)
    if modality in TABLE_MODALITIES
    for k in COHORT_FOLDS[cohort]
]


rule omics:
    input:
        table=lambda wildcards: COHORTS[wildcards.cohort]["table"],
        fold="results/{cohort}/splits/fold_{fold}.json",
    output:
        "results/{cohort}/modalities/{modality}/fold_{fold}.h5ad",
    log:
        log_path("results/{cohort}/modalities/{modality}/fold_{fold}.h5ad"),
    wildcard_constraints:
        cohort=COHORT_PATTERN,
        modality="|".join(re.escape(name) for name in TABLE_MODALITIES) or "(?!)",
        fold=r"\d+",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=lambda wildcards, attempt: 4096 * attempt,
        runtime=15,
    params:
        modality=lambda wildcards: config["modalities"][wildcards.modality],
        n_bins=config["survival"]["n_bins"],
    script:
        "../scripts/omics.py"
