"""Shared fixtures: the real data folder and a runner for the workflow on tiny configs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
SNAKEFILE = REPO_ROOT / "workflow" / "Snakefile"


def shared_data_root() -> Path:
    """The real data folder: $MMLEGO_TEST_DATA, else ../shared/data beside the checkout."""
    return Path(os.environ.get("MMLEGO_TEST_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    root = shared_data_root()
    if not (root / "MANIFEST.tsv").is_file():
        pytest.skip(f"real data folder not found at {root} (set MMLEGO_TEST_DATA to it)")
    return root


CMU = "CMU-1-Small-Region.svs"
TCGA = "TCGA-CR-7395-01A-01-TS1.svs"


@pytest.fixture
def wsi(shared_data):
    """The folder of the two real slides."""
    folder = shared_data / "wsi"
    if not (folder / CMU).is_file() or not (folder / TCGA).is_file():
        pytest.skip(f"real slides not found in {folder}")
    return folder


def write_blank_slide(path, size=2048):
    """A white two-level pyramidal TIFF at 0.5 µm/px (20000 pixels per centimetre)."""
    image = np.full((size, size, 3), 255, dtype=np.uint8)
    with tifffile.TiffWriter(path) as writer:
        writer.write(image, tile=(256, 256), photometric="rgb", compression="zlib",
                     resolution=(20000, 20000), resolutionunit="CENTIMETER")
        writer.write(image[::2, ::2], tile=(256, 256), photometric="rgb", compression="zlib",
                     resolution=(10000, 10000), resolutionunit="CENTIMETER", subfiletype=1)
    return path


def write_truncated_slide(source, path):
    """The first half of ``source``. OpenSlide cannot open it when the TIFF directories lie in
    the second half, as in CMU-1-Small-Region.svs."""
    data = Path(source).read_bytes()
    Path(path).write_bytes(data[: len(data) // 2])
    return path


def write_corrupt_slide(source, path):
    """``source`` with every level-0 tile zeroed: OpenSlide opens it but cannot decode a pixel."""
    data = bytearray(Path(source).read_bytes())
    with tifffile.TiffFile(source) as tiff:
        page = tiff.pages[0]
        for offset, count in zip(page.dataoffsets, page.databytecounts):
            data[offset : offset + count] = bytes(count)
    Path(path).write_bytes(bytes(data))
    return path


def manifest_entries(root: Path, prefix: str) -> list[dict]:
    """Rows of MANIFEST.tsv whose path starts with ``prefix``, as data.files entries."""
    entries = []
    lines = (root / "MANIFEST.tsv").read_text().splitlines()
    for line in lines[1:]:
        path, size_bytes, sha256, url, _license = line.split("\t")
        if path.startswith(prefix):
            entries.append(
                {"path": path, "url": url, "sha256": sha256, "size_bytes": int(size_bytes)}
            )
    return entries


def run_workflow(
    workdir: Path,
    config: dict,
    *targets: str,
    extra_args: list[str] | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess:
    """Run the real workflow in ``workdir`` with ``config`` written to workdir/config.yaml."""
    workdir.mkdir(parents=True, exist_ok=True)
    config_path = workdir / "config.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    command = [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(SNAKEFILE),
        "--directory",
        str(workdir),
        "--configfile",
        str(config_path),
        "--cores",
        "2",
        *(extra_args or []),
        *targets,
    ]
    # The caller's mirror setting must not leak into a test that sets its own.
    full_env = {key: value for key, value in os.environ.items() if key != "MMLEGO_DATA_MIRROR"}
    full_env.update(env or {})
    return subprocess.run(command, capture_output=True, text=True, env=full_env, timeout=1800)


@pytest.fixture
def workflow_runner():
    return run_workflow
