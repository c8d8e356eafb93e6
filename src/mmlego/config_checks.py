"""Checks of the workflow config that a JSON Schema cannot express."""

from __future__ import annotations

from collections.abc import Mapping


class ConfigError(ValueError):
    """The workflow config is inconsistent; the message names the key and the fix."""


def check_config(config: Mapping) -> None:
    """Raise ``ConfigError`` for cross-references the schema cannot check.

    Called from the Snakefile right after schema validation, so a bad config stops the run
    before any job starts.
    """
    _check_data_paths_unique(config.get("data", {}))
    declared = set(config.get("modalities", {}) or {})
    for name, cohort in (config.get("cohorts") or {}).items():
        _check_cohort(name, cohort, declared)


def _check_data_paths_unique(data: Mapping) -> None:
    seen: set[str] = set()
    for entry in data.get("files", []):
        if entry["path"] in seen:
            raise ConfigError(
                f"data.files: the path {entry['path']!r} is listed twice; keep one entry."
            )
        seen.add(entry["path"])


def _check_cohort(name: str, cohort: Mapping, declared: set[str]) -> None:
    for modality in cohort.get("modalities", []):
        if modality not in declared:
            raise ConfigError(
                f"cohorts.{name}.modalities: {modality!r} is not declared under `modalities` "
                f"(declared: {sorted(declared) or 'none'}). Declare it or remove it."
            )
    files = (cohort.get("splits") or {}).get("files")
    if files and "{fold}" not in files:
        raise ConfigError(
            f"cohorts.{name}.splits.files: {files!r} must contain '{{fold}}', which is "
            f"replaced by the fold index 0..n_folds-1."
        )
