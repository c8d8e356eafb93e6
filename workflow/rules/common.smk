import os
import re
import sys
from types import SimpleNamespace as Namespace

import pandas as pd

# Jobs import the package from this checkout, so results always match the code beside
# the workflow, also in conda environments that do not install it.
SRC_DIR = os.path.abspath(os.path.join(workflow.basedir, "..", "src"))
sys.path.insert(0, SRC_DIR)
os.environ["PYTHONPATH"] = os.pathsep.join(
    [SRC_DIR] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
)


envvars:
    "PYTHONPATH",


from mmlego.config_checks import check_config

check_config(config)

ENV = "../envs/mmlego.yaml"
DATA_DIR = config["data"]["directory"].rstrip("/")
DATA_FILES = {entry["path"]: entry for entry in config["data"]["files"]}


def log_path(output_path):
    """Log file of a job, mirroring its main output path under logs/."""
    return f"logs/{output_path}.log"


# Input functions and names of the modelling stages (blocks, fusion, evaluate).


def modality_inputs(wildcards):
    """Inputs of one modality of one fold: its AnnData, or the slide features and labels."""
    cohort, modality, fold = wildcards.cohort, wildcards.modality, wildcards.fold
    if MODALITY_SPECS[modality].kind == "table":
        return {"h5ad": f"results/{cohort}/modalities/{modality}/fold_{fold}.h5ad"}
    return {
        "cohort": f"results/{cohort}/cohort.tsv",
        "fold": f"results/{cohort}/splits/fold_{fold}.json",
        "features": [slide_features_path(slide) for slide in SLIDES],
    }


def slide_modality_params(wildcards):
    """The slide sheet's slide_id -> case_id mapping, the number of survival bins and
    slides.on_failure, the policy for slides that failed their stages."""
    return {
        "slide_cases": SLIDE_CASES,
        "n_bins": config["survival"]["n_bins"],
        "on_failure": SLIDES_CONFIG["on_failure"],
    }


def model_modalities(cohort):
    """The cohort's kept modalities, in config order; waits for checkpoint `cohort`."""
    return list(cohort_modalities(cohort))


def all_modality_inputs(wildcards):
    """Inputs of every kept modality of the cohort for one fold, keyed by modality."""
    inputs = {}
    for modality in model_modalities(wildcards.cohort):
        named = modality_inputs(
            Namespace(cohort=wildcards.cohort, modality=modality, fold=wildcards.fold)
        )
        for key, value in named.items():
            inputs[f"{modality}__{key}"] = value
    return inputs


def latent_caches(wildcards):
    return {
        modality: f"results/{wildcards.cohort}/latents/{modality}/fold_{wildcards.fold}.h5"
        for modality in model_modalities(wildcards.cohort)
    }


def block_weights(wildcards):
    return {
        modality: f"results/{wildcards.cohort}/blocks/{modality}/fold_{wildcards.fold}.safetensors"
        for modality in model_modalities(wildcards.cohort)
    }


def block_predictions(wildcards):
    return [
        f"results/{wildcards.cohort}/predictions/block_{modality}/fold_{wildcards.fold}.tsv"
        for modality in model_modalities(wildcards.cohort)
    ]


def prediction_outputs(method):
    """Named outputs of a method's predictions for one (cohort, fold)."""
    stem = f"results/{{cohort}}/predictions/{method}/fold_{{fold}}"
    return {"predictions": f"{stem}.tsv", "record": f"{stem}.json"}


BASE_METHODS = ["legomerge", "legofuse", "early_fusion", "late_fusion", "coxnet"]


def cohort_methods(cohort):
    """Every method scored for a cohort: MM-Lego, the baselines and each block alone."""
    return BASE_METHODS + [f"block_{m}" for m in model_modalities(cohort)]


def evaluation_inputs(wildcards):
    cohort = wildcards.cohort
    predictions = [
        f"results/{cohort}/predictions/{method}/fold_{fold}.tsv"
        for method in cohort_methods(cohort)
        for fold in COHORT_FOLDS[cohort]
    ]
    return {
        "predictions": predictions,
        "cohort": f"results/{cohort}/cohort.tsv",
        "folds": [
            f"results/{cohort}/splits/fold_{fold}.json" for fold in COHORT_FOLDS[cohort]
        ],
    }


def cohort_slide_features(cohort):
    """Features files of every slide of the sheet when the cohort uses a slides modality."""
    uses_slides = any(
        MODALITY_SPECS[name].kind == "slides" for name in COHORTS[cohort]["modalities"]
    )
    return [slide_features_path(slide) for slide in SLIDES] if uses_slides else []


def cohort_input_files(cohort):
    """Input files of a cohort whose checksums are recorded with its results."""
    splits = COHORTS[cohort]["splits"]["files"]
    files = [COHORTS[cohort]["table"]]
    if splits:
        files += [splits.replace("{fold}", str(fold)) for fold in COHORT_FOLDS[cohort]]
    return files
