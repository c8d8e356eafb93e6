"""The data stage: mirror copies, checksum checks and errors without network."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from mmlego.data import ChecksumError, DataFile, FetchError, fetch, resolve_mirror

# A loopback address where nothing listens: a download attempt fails at once, as it
# does on a machine without network access.
UNREACHABLE_URL = "http://127.0.0.1:9/tcga_example.csv"


def make_mirror(root: Path, relative: str, content: bytes) -> DataFile:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return DataFile(
        path=relative, url=UNREACHABLE_URL, sha256=hashlib.sha256(content).hexdigest()
    )


def test_fetch_copies_verified_file_from_mirror(tmp_path):
    entry = make_mirror(tmp_path / "mirror", "omics/table.csv", b"case_id\nA\n")
    target = tmp_path / "resources" / "omics" / "table.csv"

    fetch(entry, target, mirror=tmp_path / "mirror")

    assert target.read_bytes() == b"case_id\nA\n"
    assert list(target.parent.iterdir()) == [target]


def test_checksum_mismatch_names_both_digests_and_keeps_nothing(tmp_path):
    entry = make_mirror(tmp_path / "mirror", "table.csv", b"original")
    (tmp_path / "mirror" / "table.csv").write_bytes(b"corrupted")
    actual = hashlib.sha256(b"corrupted").hexdigest()
    target = tmp_path / "resources" / "table.csv"

    with pytest.raises(ChecksumError) as error:
        fetch(entry, target, mirror=tmp_path / "mirror")

    message = str(error.value)
    assert "table.csv" in message
    assert entry.sha256 in message
    assert actual in message
    assert list((tmp_path / "resources").iterdir()) == []


def test_file_missing_from_mirror_names_file_address_and_fix(tmp_path):
    (tmp_path / "mirror").mkdir()
    entry = DataFile(path="wsi/slide.svs", url=UNREACHABLE_URL, sha256="0" * 64)

    with pytest.raises(FetchError) as error:
        fetch(entry, tmp_path / "resources" / "wsi" / "slide.svs", mirror=tmp_path / "mirror")

    message = str(error.value)
    assert "wsi/slide.svs" in message
    assert UNREACHABLE_URL in message
    assert "MMLEGO_DATA_MIRROR" in message
    assert not (tmp_path / "resources" / "wsi" / "slide.svs").exists()


def test_download_without_network_names_file_address_and_mirror(tmp_path):
    entry = DataFile(path="omics/table.csv", url=UNREACHABLE_URL, sha256="0" * 64)
    target = tmp_path / "resources" / "omics" / "table.csv"

    with pytest.raises(FetchError) as error:
        fetch(entry, target, mirror=None, timeout_s=5)

    message = str(error.value)
    assert "omics/table.csv" in message
    assert UNREACHABLE_URL in message
    assert "MMLEGO_DATA_MIRROR" in message
    assert list(target.parent.iterdir()) == []


def test_mirror_environment_variable_overrides_config(tmp_path, monkeypatch):
    monkeypatch.setenv("MMLEGO_DATA_MIRROR", str(tmp_path / "from_env"))

    assert resolve_mirror(tmp_path / "from_config") == (tmp_path / "from_env").resolve()


def test_no_mirror_when_neither_is_set(monkeypatch):
    monkeypatch.delenv("MMLEGO_DATA_MIRROR", raising=False)

    assert resolve_mirror(None) is None


def test_fetch_real_slide_from_shared_mirror(shared_data, tmp_path):
    from conftest import manifest_entries

    entry = DataFile.from_mapping(manifest_entries(shared_data, "wsi/CMU-1")[0])
    target = tmp_path / entry.path

    fetch(entry, target, mirror=shared_data)

    assert target.stat().st_size == entry.size_bytes
