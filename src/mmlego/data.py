"""Obtain input files by public address and sha256, from a local mirror or the network."""

from __future__ import annotations

import hashlib
import logging
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from mmlego.atomic import atomic_path

logger = logging.getLogger(__name__)

MIRROR_ENV = "MMLEGO_DATA_MIRROR"
CHUNK_BYTES = 1 << 20


class FetchError(RuntimeError):
    """A file could not be obtained from the mirror or its address."""


class ChecksumError(FetchError):
    """A file was obtained but its sha256 differs from the expected one."""


@dataclass(frozen=True)
class DataFile:
    """One input file: its path relative to the data root, public address and sha256."""

    path: str
    url: str
    sha256: str
    size_bytes: int | None = None

    @classmethod
    def from_mapping(cls, entry: dict) -> "DataFile":
        return cls(
            path=entry["path"],
            url=entry["url"],
            sha256=entry["sha256"].lower(),
            size_bytes=entry.get("size_bytes"),
        )


def resolve_mirror(configured: str | os.PathLike | None) -> Path | None:
    """Return the mirror directory: ``$MMLEGO_DATA_MIRROR`` overrides the configured one."""
    value = os.environ.get(MIRROR_ENV) or configured
    if not value:
        return None
    return Path(value).expanduser().resolve()


def sha256_of(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch(
    entry: DataFile,
    destination: str | os.PathLike,
    *,
    mirror: str | os.PathLike | None = None,
    timeout_s: float = 60.0,
) -> Path:
    """Copy ``entry`` from ``mirror`` (when given) or download it from ``entry.url``.

    The file is written under a temporary name, its sha256 is checked, and only then is it
    renamed to ``destination``; on a mismatch or any failure nothing is left behind.
    A given mirror replaces the network entirely: a file missing from it is an error.

    Raises:
        FetchError: the mirror lacks the file, or the download failed.
        ChecksumError: the obtained bytes do not match ``entry.sha256``.
    """
    destination = Path(destination)
    mirror_path = Path(mirror) if mirror else None
    with atomic_path(destination) as tmp_path:
        if mirror_path is not None:
            _copy_from_mirror(entry, mirror_path, tmp_path)
        else:
            _download(entry, tmp_path, timeout_s=timeout_s)
        _check_sha256(entry, tmp_path)
    logger.info("fetched %s (sha256 %s)", entry.path, entry.sha256)
    return destination


def _copy_from_mirror(entry: DataFile, mirror: Path, tmp_path: Path) -> None:
    source = mirror / entry.path
    if not source.is_file():
        raise FetchError(
            f"{entry.path}: not found in the mirror directory {mirror} (looked for {source}). "
            f"Put the file there, point {MIRROR_ENV} or data.mirror at a directory that has it, "
            f"or unset both to download it from {entry.url}."
        )
    logger.info("copying %s from mirror %s", entry.path, mirror)
    total = source.stat().st_size
    with open(source, "rb") as reader, open(tmp_path, "wb") as writer:
        _stream(reader, writer, total, entry.path)


def _download(entry: DataFile, tmp_path: Path, *, timeout_s: float) -> None:
    logger.info("downloading %s from %s", entry.path, entry.url)
    try:
        with urllib.request.urlopen(entry.url, timeout=timeout_s) as response:
            total = int(response.headers.get("Content-Length") or 0) or entry.size_bytes
            with open(tmp_path, "wb") as writer:
                _stream(response, writer, total, entry.path)
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise FetchError(
            f"{entry.path}: download from {entry.url} failed ({reason}). Without network "
            f"access, set {MIRROR_ENV} (or data.mirror in the config) to a directory that "
            f"holds {entry.path} under the same relative path."
        ) from error


def _stream(reader, writer, total: int | None, label: str) -> None:
    with tqdm(total=total, unit="B", unit_scale=True, desc=label, leave=False) as progress:
        for chunk in iter(lambda: reader.read(CHUNK_BYTES), b""):
            writer.write(chunk)
            progress.update(len(chunk))


def _check_sha256(entry: DataFile, path: Path) -> None:
    actual = sha256_of(path)
    if actual != entry.sha256:
        raise ChecksumError(
            f"{entry.path}: sha256 mismatch, expected {entry.sha256} but the obtained file "
            f"has {actual}. The file was not kept; replace the mirror copy or check the "
            f"address {entry.url}."
        )


def main(argv: list[str] | None = None) -> int:
    """Command line: fetch the files of a workflow config into its data directory."""
    import argparse

    import yaml

    from mmlego.logs import setup_logging

    parser = argparse.ArgumentParser(prog="mmlego fetch", description=main.__doc__)
    parser.add_argument("config", help="workflow config YAML with a data.files list")
    parser.add_argument(
        "--mirror", help=f"mirror directory (default: ${MIRROR_ENV}, then data.mirror)"
    )
    args = parser.parse_args(argv)
    setup_logging()

    with open(args.config) as handle:
        data = (yaml.safe_load(handle) or {}).get("data", {})
    mirror = Path(args.mirror) if args.mirror else resolve_mirror(data.get("mirror"))
    directory = Path(data.get("directory", "resources"))
    for entry in data.get("files", []):
        item = DataFile.from_mapping(entry)
        target = directory / item.path
        if target.is_file() and sha256_of(target) == item.sha256:
            logger.info("%s is present and verified", target)
            continue
        fetch(item, target, mirror=mirror)
    return 0
