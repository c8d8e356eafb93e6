DATA_TARGETS = [f"{DATA_DIR}/{path}" for path in DATA_FILES]


rule fetch_data:
    output:
        f"{DATA_DIR}/{{path}}",
    log:
        log_path(f"{DATA_DIR}/{{path}}"),
    wildcard_constraints:
        path="|".join(re.escape(path) for path in DATA_FILES) or "(?!)",
    retries: 1
    conda:
        ENV
    resources:
        runtime=30,
        mem_mb=lambda wildcards, attempt: 512 * attempt,
    params:
        entry=lambda wildcards: DATA_FILES[wildcards.path],
    script:
        "../scripts/fetch_data.py"
