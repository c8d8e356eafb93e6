"""The modelling half of the workflow end to end on a small real cohort (KIRP subset).

Runs cohort -> omics -> blocks -> latent caches -> LegoMerge, LegoFuse and the baselines
-> evaluation through snakemake, then checks the outputs, LegoMerge's zero gradient
steps, reruns, partial reruns after a deleted block, and a restart after a killed run.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from conftest import SNAKEFILE, manifest_entries

pytestmark = pytest.mark.slow

KIRP_TABLE = "tcga_omics/tcga_kirp_all_clean.csv.zip"
METHODS = {"legomerge", "legofuse", "early_fusion", "late_fusion", "coxnet", "block_mut", "block_clinical", "block_rna"}


def kirp_config(shared_data: Path) -> dict:
    """A small, fast run: KIRP, three modalities, two generated folds, short training."""
    return {
        "data": {"mirror": str(shared_data), "files": manifest_entries(shared_data, KIRP_TABLE)},
        "cohorts": {
            "kirp": {
                "table": f"resources/{KIRP_TABLE}",
                "modalities": ["rna", "mut", "clinical"],
                "splits": {"files": None, "n_folds": 2, "seed": 3},
            }
        },
        "modalities": {
            "rna": {"suffix": "_rnaseq", "transform": "signed_log_zscore", "options": {"max_features": 64}},
            "mut": {"suffix": "_mut", "transform": "binary", "options": {"min_count": 3}},
            "clinical": {
                "columns": ["age", "is_female"],
                "transform": "clinical",
                "options": {"numeric": ["age"], "binary": ["is_female"], "categorical": []},
            },
        },
        "survival": {"n_bins": 4},
        "blocks": {"encoders": {"table": {"name": "snn", "hidden": [32], "dropout": 0.1}}},
        "training": {"max_epochs": 4, "patience": 2},
        "fuse": {"epochs": 3, "patience": 1},
        "baselines": {"coxnet": {"n_alphas": 8}, "early_fusion": {"hidden": [32]}},
    }


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, shared_data):
    from conftest import run_workflow

    workdir = tmp_path_factory.mktemp("kirp")
    config = kirp_config(shared_data)
    result = run_workflow(workdir, config)
    assert result.returncode == 0, result.stderr[-5000:]
    return workdir, config


def planned_rules(dry_run_output: str) -> set[str]:
    """Rule names of the jobs that ``snakemake --dry-run`` lists."""
    return set(re.findall(r"^(?:local)?rule (\w+):", dry_run_output, flags=re.MULTILINE))


def read_metrics(workdir: Path) -> pd.DataFrame:
    return pd.read_csv(workdir / "results/kirp/metrics.tsv", sep="\t")


def test_metrics_cover_every_method_and_fold(finished_run):
    workdir, _ = finished_run
    metrics = read_metrics(workdir)

    assert set(metrics["method"]) == METHODS
    assert set(metrics["fold"]) == {0, 1}
    for metric in ("c_index", "c_index_ipcw", "ibs", "mean_auc", "gradient_steps"):
        assert (metrics["metric"] == metric).sum() == len(METHODS) * 2, metric
    c_index = metrics[metrics["metric"] == "c_index"]["value"]
    assert c_index.between(0, 1).all()


def test_legomerge_takes_zero_gradient_steps(finished_run):
    workdir, _ = finished_run
    metrics = read_metrics(workdir)
    steps = metrics[metrics["metric"] == "gradient_steps"].set_index(["method", "fold"])["value"]

    assert (steps.loc["legomerge"] == 0).all()
    assert (steps.loc["legofuse"] > 0).all()
    assert (steps.loc["early_fusion"] > 0).all()


def test_outputs_follow_the_documented_layout(finished_run):
    workdir, _ = finished_run
    results = workdir / "results/kirp"

    for fold in (0, 1):
        for modality in ("rna", "mut", "clinical"):
            assert (results / f"blocks/{modality}/fold_{fold}.safetensors").is_file()
            assert (results / f"blocks/{modality}/fold_{fold}.json").is_file()
            assert (results / f"latents/{modality}/fold_{fold}.h5").is_file()
    summary = (results / "summary.md").read_text()
    for method in METHODS:
        assert f"| {method} |" in summary
    assert (results / "plots/c_index.png").stat().st_size > 0
    assert (results / "plots/kaplan_meier.png").stat().st_size > 0
    assert "input_sha256" in (results / "provenance.json").read_text()


def test_legomerge_predicts_every_test_patient(finished_run):
    import json

    workdir, _ = finished_run
    results = workdir / "results/kirp"
    for fold in (0, 1):
        test_ids = set(json.loads((results / f"splits/fold_{fold}.json").read_text())["test"])
        predicted = pd.read_csv(results / f"predictions/legomerge/fold_{fold}.tsv", sep="\t")

        assert set(predicted["case_id"]) == test_ids


def test_legofuse_stops_after_patience(finished_run):
    import json

    workdir, _ = finished_run
    for fold in (0, 1):
        record = json.loads((workdir / f"results/kirp/predictions/legofuse/fold_{fold}.json").read_text())
        details = record["details"]
        epochs_run = len(details["history"])

        assert details["patience"] == 1
        assert 1 <= details["best_epoch"] <= epochs_run
        assert epochs_run <= min(3, details["best_epoch"] + 1)


def test_rerun_after_success_has_nothing_to_do(finished_run, workflow_runner):
    workdir, config = finished_run

    result = workflow_runner(workdir, config, extra_args=["--dry-run"])

    assert result.returncode == 0
    assert "Nothing to be done" in result.stdout + result.stderr


def test_deleted_block_reruns_only_its_dependents(finished_run, workflow_runner):
    workdir, config = finished_run
    (workdir / "results/kirp/blocks/mut/fold_1.safetensors").unlink()

    result = workflow_runner(workdir, config, extra_args=["--dry-run"])

    assert result.returncode == 0
    planned = planned_rules(result.stdout + result.stderr)
    expected = {"train_block", "encode_latents", "legomerge", "legofuse", "late_fusion", "evaluate", "all"}
    assert planned == expected

    completed = workflow_runner(workdir, config)
    assert completed.returncode == 0, completed.stderr[-3000:]


def test_killed_run_restarts_to_same_metrics(finished_run, tmp_path, shared_data):
    reference_dir, config = finished_run
    workdir = tmp_path / "killed"
    workdir.mkdir()
    import yaml

    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    command = [
        sys.executable, "-m", "snakemake", "--snakefile", str(SNAKEFILE), "--directory", str(workdir),
        "--configfile", str(workdir / "config.yaml"), "--cores", "2",
    ]
    env = {key: value for key, value in os.environ.items() if key != "MMLEGO_DATA_MIRROR"}
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    blocks = workdir / "results/kirp/blocks"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and not any(blocks.glob("*/fold_*.safetensors")):
        time.sleep(1)
    os.killpg(process.pid, signal.SIGKILL)  # a crash: no clean-up by snakemake
    process.wait()
    assert not (workdir / "results/kirp/metrics.tsv").exists()

    subprocess.run([*command, "--unlock"], env=env, capture_output=True, check=True)
    restarted = subprocess.run([*command, "--rerun-incomplete"], env=env, capture_output=True, text=True)

    assert restarted.returncode == 0, restarted.stderr[-3000:]
    expected = read_metrics(reference_dir)
    found = read_metrics(workdir)
    comparable = ~expected["metric"].isin(["seconds"])
    pd.testing.assert_frame_equal(
        found[comparable].reset_index(drop=True), expected[comparable].reset_index(drop=True), rtol=1e-6
    )
