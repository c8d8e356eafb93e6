from mmlego.modalities import parse_modalities, read_kept_modalities

# Parsing the modality declarations here stops a bad selector, transform or option
# before any job runs.
MODALITY_SPECS = parse_modalities(config["modalities"])
COHORTS = config["cohorts"]
COHORT_PATTERN = "|".join(re.escape(name) for name in COHORTS) or "(?!)"
COHORT_FOLDS = {
    name: range(cohort["splits"]["n_folds"]) for name, cohort in COHORTS.items()
}

COHORT_TARGETS = [
    path
    for cohort in COHORTS
    for path in [
        f"results/{cohort}/cohort.tsv",
        f"results/{cohort}/modalities.json",
        *(f"results/{cohort}/splits/fold_{k}.json" for k in COHORT_FOLDS[cohort]),
    ]
]

# Modalities kept for a cohort, which a modality skipped by `on_empty: skip` is not.
# Known only once the table has been read, so call it only inside input functions: it
# waits for checkpoint `cohort`.
cohort_modalities = lambda cohort: read_kept_modalities(
    checkpoints.cohort.get(cohort=cohort).output.modalities
)


checkpoint cohort:
    input:
        table=lambda wildcards: COHORTS[wildcards.cohort]["table"],
    output:
        cohort="results/{cohort}/cohort.tsv",
        modalities="results/{cohort}/modalities.json",
    log:
        log_path("results/{cohort}/cohort.tsv"),
    wildcard_constraints:
        cohort=COHORT_PATTERN,
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=lambda wildcards, attempt: 4096 * attempt,
        runtime=15,
    params:
        cohort=lambda wildcards: COHORTS[wildcards.cohort],
        modalities=config["modalities"],
    script:
        "../scripts/cohort.py"


rule split:
    input:
        cohort="results/{cohort}/cohort.tsv",
        # The cohort's split file for this fold; none when folds are generated.
        split_file=lambda wildcards: (
            [
                COHORTS[wildcards.cohort]["splits"]["files"].replace(
                    "{fold}", wildcards.fold
                )
            ]
            if COHORTS[wildcards.cohort]["splits"]["files"]
            else []
        ),
    output:
        "results/{cohort}/splits/fold_{fold}.json",
    log:
        log_path("results/{cohort}/splits/fold_{fold}.json"),
    wildcard_constraints:
        cohort=COHORT_PATTERN,
        fold=r"\d+",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=lambda wildcards, attempt: 1024 * attempt,
        runtime=5,
    params:
        splits=lambda wildcards: COHORTS[wildcards.cohort]["splits"],
    script:
        "../scripts/splits.py"
