EVALUATE_TARGETS = [
    f"results/{cohort}/{name}"
    for cohort in COHORTS
    for name in ["metrics.tsv", "summary.md", "provenance.json"]
]


rule evaluate:
    input:
        unpack(evaluation_inputs),
    output:
        metrics="results/{cohort}/metrics.tsv",
        summary=report(
            "results/{cohort}/summary.md",
            caption="../report/summary.rst",
            category="Results",
            labels={"cohort": "{cohort}", "figure": "summary table"},
        ),
        c_index=report(
            "results/{cohort}/plots/c_index.png",
            caption="../report/c_index.rst",
            category="Results",
            labels={"cohort": "{cohort}", "figure": "C-index per fold"},
        ),
        kaplan_meier=report(
            "results/{cohort}/plots/kaplan_meier.png",
            caption="../report/kaplan_meier.rst",
            category="Results",
            labels={"cohort": "{cohort}", "figure": "Kaplan-Meier"},
        ),
    log:
        log_path("results/{cohort}/metrics.tsv"),
    wildcard_constraints:
        cohort=COHORT_PATTERN,
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=lambda wildcards, attempt: 2048 * attempt,
        runtime=15,
    params:
        methods=lambda wildcards: cohort_methods(wildcards.cohort),
        folds=lambda wildcards: list(COHORT_FOLDS[wildcards.cohort]),
    script:
        "../scripts/evaluate.py"


rule provenance:
    input:
        data=lambda wildcards: cohort_input_files(wildcards.cohort),
        cohort="results/{cohort}/cohort.tsv",
        # Read for the slides that failed under slides.on_failure: skip.
        features=lambda wildcards: cohort_slide_features(wildcards.cohort),
    output:
        "results/{cohort}/provenance.json",
    log:
        log_path("results/{cohort}/provenance.json"),
    wildcard_constraints:
        cohort=COHORT_PATTERN,
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=lambda wildcards, attempt: 1024 * attempt,
        runtime=10,
    params:
        config=config,
        slide_cases=SLIDE_CASES,
    script:
        "../scripts/provenance.py"
