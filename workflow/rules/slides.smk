from snakemake.utils import validate

from mmlego.slides.precomputed import find_precomputed
from mmlego.slides.sheet import encoder_dirname, read_slide_sheet, slide_rows

SLIDES_CONFIG = config["slides"]


SLIDE_SHEET = read_slide_sheet(SLIDES_CONFIG["sheet"])
validate(SLIDE_SHEET, "../schemas/slides.schema.yaml")
SLIDES = slide_rows(SLIDE_SHEET)
SLIDE_CASES = {slide: row["case_id"] for slide, row in SLIDES.items()}
# The slide_id character class of the sheet schema, not an alternation of every slide id:
# snakemake scans the constraint on each wildcard match, so a list of 10,000 ids makes a
# dry run quadratic in the number of slides.
SLIDE_PATTERN = r"[A-Za-z0-9_.-]+" if SLIDES else "(?!)"
PRECOMPUTED_DIR = SLIDES_CONFIG["precomputed_features"]
# Features folder under results/features/: the encoder's name, or "precomputed" when
# CLAM/TRIDENT features are imported instead of running the slide stages.
FEATURE_SET = (
    "precomputed"
    if PRECOMPUTED_DIR
    else encoder_dirname(SLIDES_CONFIG["features"]["encoder"])
)


# ONNX export of the encoder, made once and shared by every slide's extract_features job.
ENCODER_ONNX = (
    f"results/features/{FEATURE_SET}/encoder.onnx"
    if not PRECOMPUTED_DIR and SLIDES_CONFIG["features"]["backend"] == "onnxruntime"
    else None
)


# Patch features file of a slide, whichever way the features are made.
slide_features_path = lambda slide_id: f"results/features/{FEATURE_SET}/{slide_id}.h5"
# Outputs of one slide: all stage outputs, or only the imported features.
slide_targets = lambda slide_id: (
    [slide_features_path(slide_id)]
    if PRECOMPUTED_DIR
    else [
        f"results/slides/{slide_id}/{name}"
        for name in ("info.json", "tissue.png", "tissue.geojson", "coords.h5")
    ]
    + [slide_features_path(slide_id)]
)
SLIDE_TARGETS = [path for slide_id in SLIDES for path in slide_targets(slide_id)]


# One job runs the inspect, tissue and tiling stages of a slide. Each stage needs the
# previous one's output and runs on one CPU, so separate jobs would gain no parallelism,
# while every job adds to the time Snakemake takes to build the DAG of a large slide sheet
# (benchmarks/dag_dry_run.py). The script reads slides.on_failure from the config, not
# from params, so changing the policy does not rerun the slides that are already done.


rule prepare_slide:
    input:
        slide=lambda wildcards: SLIDES[wildcards.slide]["path"],
    output:
        info="results/slides/{slide}/info.json",
        png=report(
            "results/slides/{slide}/tissue.png",
            caption="../report/tissue.rst",
            category="Slide QC",
            labels={"slide": "{slide}", "figure": "tissue"},
        ),
        geojson="results/slides/{slide}/tissue.geojson",
        coords="results/slides/{slide}/coords.h5",
    log:
        log_path("results/slides/{slide}/coords.h5"),
    benchmark:
        "logs/benchmarks/results/slides/{slide}/coords.tsv"
    wildcard_constraints:
        slide=SLIDE_PATTERN,
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=lambda wildcards, attempt: 2048 * attempt,
        runtime=35,
    params:
        mpp=lambda wildcards: SLIDES[wildcards.slide]["mpp"],
        missing_mpp=SLIDES_CONFIG["missing_mpp"],
        tissue=SLIDES_CONFIG["tissue"],
        tiling=SLIDES_CONFIG["tiling"],
    script:
        "../scripts/slides_prepare.py"


if PRECOMPUTED_DIR:

    rule import_features:
        input:
            features=lambda wildcards: find_precomputed(
                PRECOMPUTED_DIR, wildcards.slide
            ),
        output:
            features="results/features/precomputed/{slide}.h5",
        log:
            log_path("results/features/precomputed/{slide}.h5"),
        wildcard_constraints:
            slide=SLIDE_PATTERN,
        conda:
            ENV
        threads: 1
        resources:
            mem_mb=lambda wildcards, attempt: 2048 * attempt,
            runtime=10,
        script:
            "../scripts/slides_import_features.py"

else:

    rule export_encoder:
        output:
            onnx=f"results/features/{FEATURE_SET}/encoder.onnx",
        log:
            log_path(f"results/features/{FEATURE_SET}/encoder.onnx"),
        conda:
            ENV
        threads: 1
        resources:
            mem_mb=lambda wildcards, attempt: 2048 * attempt,
            runtime=10,
        params:
            settings=SLIDES_CONFIG["features"],
            input_size=SLIDES_CONFIG["tiling"]["patch_size"],
        script:
            "../scripts/slides_export_encoder.py"

    rule extract_features:
        input:
            slide=lambda wildcards: SLIDES[wildcards.slide]["path"],
            coords="results/slides/{slide}/coords.h5",
            onnx=[ENCODER_ONNX] if ENCODER_ONNX else [],
        output:
            features=f"results/features/{FEATURE_SET}/{{slide}}.h5",
        log:
            log_path(f"results/features/{FEATURE_SET}/{{slide}}.h5"),
        benchmark:
            f"logs/benchmarks/results/features/{FEATURE_SET}/{{slide}}.tsv"
        wildcard_constraints:
            slide=SLIDE_PATTERN,
        conda:
            ENV
        threads: 4
        resources:
            mem_mb=lambda wildcards, attempt: 4096 * attempt,
            runtime=120,
        params:
            settings=SLIDES_CONFIG["features"],
        script:
            "../scripts/slides_features.py"
