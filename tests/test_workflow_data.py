"""The workflow's config validation and data stage, run through snakemake."""

from __future__ import annotations

import shutil

from conftest import manifest_entries


def kirp_split_config(shared_data, mirror=None) -> dict:
    files = manifest_entries(shared_data, "splits/5foldcv/tcga_kirp")
    return {"data": {"mirror": str(mirror or shared_data), "files": files}}


def test_unknown_config_key_rejected_before_any_job(tmp_path, shared_data, workflow_runner):
    config = kirp_split_config(shared_data)
    config["data"]["mirorr"] = "/tmp"

    result = workflow_runner(tmp_path, config)

    assert result.returncode != 0
    assert "'mirorr' was unexpected" in result.stderr
    assert not (tmp_path / "resources").exists()
    assert not (tmp_path / "logs").exists()


def test_mistyped_value_rejected_naming_the_key(tmp_path, shared_data, workflow_runner):
    config = kirp_split_config(shared_data)
    config["cohorts"] = {"kirp": {"table": "t.csv", "splits": {"n_folds": "five"}}}

    result = workflow_runner(tmp_path, config)

    assert result.returncode != 0
    assert "n_folds" in result.stderr
    assert "'five' is not of type 'integer'" in result.stderr
    assert not (tmp_path / "resources").exists()


def test_data_stage_fetches_from_mirror(tmp_path, shared_data, workflow_runner):
    result = workflow_runner(tmp_path, kirp_split_config(shared_data))

    assert result.returncode == 0, result.stderr[-3000:]
    fetched = sorted(p.name for p in (tmp_path / "resources/splits/5foldcv/tcga_kirp").iterdir())
    assert fetched == [f"splits_{fold}.csv" for fold in range(5)]
    assert (tmp_path / "logs/resources/splits/5foldcv/tcga_kirp/splits_0.csv.log").is_file()


def test_rerun_after_success_has_nothing_to_do(tmp_path, shared_data, workflow_runner):
    config = kirp_split_config(shared_data)
    assert workflow_runner(tmp_path, config).returncode == 0

    result = workflow_runner(tmp_path, config, extra_args=["--dry-run"])

    assert result.returncode == 0
    assert "Nothing to be done" in result.stdout + result.stderr


def test_environment_mirror_overrides_config(tmp_path, shared_data, workflow_runner):
    config = kirp_split_config(shared_data, mirror=tmp_path / "no_such_mirror")

    result = workflow_runner(tmp_path / "run", config, env={"MMLEGO_DATA_MIRROR": str(shared_data)})

    assert result.returncode == 0, result.stderr[-3000:]


def test_corrupted_mirror_file_stops_data_stage(tmp_path, shared_data, workflow_runner):
    mirror = tmp_path / "mirror"
    shutil.copytree(shared_data / "splits/5foldcv/tcga_kirp", mirror / "splits/5foldcv/tcga_kirp")
    corrupted = mirror / "splits/5foldcv/tcga_kirp/splits_2.csv"
    corrupted.write_text(corrupted.read_text().replace("TCGA", "TCGX", 1))
    config = kirp_split_config(shared_data, mirror=mirror)
    expected = next(e["sha256"] for e in config["data"]["files"] if e["path"].endswith("_2.csv"))

    result = workflow_runner(tmp_path / "run", config, extra_args=["--keep-going"])

    assert result.returncode != 0
    log = (tmp_path / "run/logs/resources/splits/5foldcv/tcga_kirp/splits_2.csv.log").read_text()
    assert "sha256 mismatch" in log
    assert expected in log
    assert not (tmp_path / "run/resources/splits/5foldcv/tcga_kirp/splits_2.csv").exists()
    leftovers = [p.name for p in (tmp_path / "run/resources/splits/5foldcv/tcga_kirp").iterdir()]
    assert sorted(leftovers) == [f"splits_{fold}.csv" for fold in (0, 1, 3, 4)]
    assert not (tmp_path / "run/results").exists()
