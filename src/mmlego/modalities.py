"""Modalities declared in the config: column selectors, transforms and empty-modality policy.

A ``table`` modality is a set of cohort-table columns chosen by exactly one selector
(``suffix``, ``regex`` or ``columns``) and preprocessed by one transform. A ``slides``
modality is backed by the slide stages and has no selector or transform here.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from mmlego.cohort import RESERVED_COLUMNS, Cohort

logger = logging.getLogger(__name__)

KINDS = ("table", "slides")
SELECTOR_KEYS = ("suffix", "regex", "columns")
ON_EMPTY_CHOICES = ("error", "skip")


class ModalityConfigError(ValueError):
    """A modality declaration is invalid; the message names the modality and the key."""


class EmptyModalityError(ValueError):
    """A configured table modality matches no column, or no patient has a value for it."""


@dataclass(frozen=True)
class ModalitySpec:
    """One declared modality: kind, column selector, transform and its options."""

    name: str
    kind: str = "table"
    selector: Mapping[str, Any] = field(default_factory=dict)
    transform: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    on_empty: str = "error"

    @property
    def selector_text(self) -> str:
        """The selector as written in the config, for messages."""
        (key, value), *_ = self.selector.items()
        return f"{key}: {value!r}"

    def to_json(self) -> str:
        return json.dumps(
            {
                "name": self.name,
                "kind": self.kind,
                "selector": dict(self.selector),
                "transform": self.transform,
                "options": dict(self.options),
                "on_empty": self.on_empty,
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> ModalitySpec:
        return cls(**json.loads(text))


def parse_modality(name: str, entry: Mapping[str, Any]) -> ModalitySpec:
    """Check one entry of the config's ``modalities`` section and fill in option defaults."""
    from mmlego.transforms import TRANSFORMS, resolve_options

    entry = dict(entry or {})
    kind = entry.pop("kind", "table")
    if kind not in KINDS:
        raise ModalityConfigError(
            f"modalities.{name}.kind: {kind!r} is invalid; use one of {list(KINDS)}."
        )
    on_empty = entry.pop("on_empty", "error")
    if on_empty not in ON_EMPTY_CHOICES:
        raise ModalityConfigError(
            f"modalities.{name}.on_empty: {on_empty!r} is invalid; use one of "
            f"{list(ON_EMPTY_CHOICES)}."
        )
    selector = {key: entry.pop(key) for key in SELECTOR_KEYS if entry.get(key) is not None}
    for key in SELECTOR_KEYS:
        entry.pop(key, None)
    transform = entry.pop("transform", None)
    options = entry.pop("options", None) or {}

    if kind == "slides":
        if selector or transform is not None or options:
            raise ModalityConfigError(
                f"modalities.{name}: a slides modality takes no column selector, transform "
                f"or options; remove {sorted([*selector, *(['transform'] if transform else [])])}."
            )
        extra = entry
    else:
        if len(selector) != 1:
            raise ModalityConfigError(
                f"modalities.{name}: give exactly one column selector out of "
                f"{list(SELECTOR_KEYS)}, found {sorted(selector) or 'none'}."
            )
        _check_selector(name, selector)
        if transform not in TRANSFORMS:
            raise ModalityConfigError(
                f"modalities.{name}.transform: {transform!r} is invalid; use one of "
                f"{sorted(TRANSFORMS)}."
            )
        options = resolve_options(transform, options, where=f"modalities.{name}.options")
        extra = entry
    if extra:
        raise ModalityConfigError(f"modalities.{name}: unknown key(s) {sorted(extra)}.")
    return ModalitySpec(
        name=name,
        kind=kind,
        selector=selector,
        transform=transform,
        options=options,
        on_empty=on_empty,
    )


def parse_modalities(section: Mapping[str, Any] | None) -> dict[str, ModalitySpec]:
    """Parse the config's ``modalities`` section into specs by name."""
    return {name: parse_modality(name, entry) for name, entry in (section or {}).items()}


def select_columns(spec: ModalitySpec, columns: Sequence[str]) -> list[str]:
    """Return the table columns that the modality's selector matches, in table order.

    Raises ``ModalityConfigError`` when the selector matches an id or label column (a
    label used as a feature leaks the target) or when a ``columns`` list names columns
    the table lacks while naming others it has.
    """
    columns = [str(column) for column in columns]
    key, value = next(iter(spec.selector.items()))
    if key == "suffix":
        selected = [column for column in columns if column.endswith(value)]
    elif key == "regex":
        pattern = re.compile(value)
        selected = [column for column in columns if pattern.search(column)]
    else:
        requested = [str(column) for column in value]
        missing = [column for column in requested if column not in columns]
        if missing and len(missing) < len(requested):
            raise ModalityConfigError(
                f"modality {spec.name!r}: the table has no column(s) {missing} of the "
                f"selector {spec.selector_text}; fix the names or remove them."
            )
        selected = [column for column in columns if column in set(requested)]
    reserved = [column for column in selected if column in RESERVED_COLUMNS]
    if reserved:
        raise ModalityConfigError(
            f"modality {spec.name!r}: the selector {spec.selector_text} matches the id or "
            f"label column(s) {reserved}, which must not be features; narrow the selector."
        )
    return selected


def modality_presence(patients: pd.DataFrame, columns: Sequence[str]) -> pd.Series:
    """Return per patient whether any of the modality's columns has a value."""
    if not columns:
        return pd.Series(False, index=patients.index)
    return patients[list(columns)].notna().any(axis=1)


@dataclass
class CohortModalities:
    """Configured and kept modalities of a cohort, with per-patient presence."""

    cohort: str
    configured: list[str]
    effective: list[str]
    skipped: dict[str, str]
    presence: dict[str, pd.Series]
    n_columns: dict[str, int]

    def to_json(self) -> dict[str, Any]:
        return {
            "cohort": self.cohort,
            "configured": self.configured,
            "modalities": self.effective,
            "skipped": self.skipped,
            "n_columns": self.n_columns,
            "n_present": {name: int(p.sum()) for name, p in self.presence.items()},
        }


def check_cohort_modalities(
    cohort: Cohort,
    specs: Sequence[ModalitySpec],
    *,
    cohort_name: str,
    on_empty: str | None = None,
) -> CohortModalities:
    """Find each configured modality's columns and patients, and apply the empty policy.

    A table modality is empty when its selector matches no column or no patient has a
    value in its columns. ``on_empty`` (the cohort's setting) overrides each modality's
    own; ``error`` raises ``EmptyModalityError`` and ``skip`` logs a warning and leaves
    the modality out of ``effective``. Presence of a slides modality is "the table lists
    at least one slide_id for the patient".
    """
    if on_empty is not None and on_empty not in ON_EMPTY_CHOICES:
        raise ModalityConfigError(
            f"cohorts.{cohort_name}.on_empty: {on_empty!r} is invalid; use one of "
            f"{list(ON_EMPTY_CHOICES)}."
        )
    result = CohortModalities(
        cohort=cohort_name,
        configured=[spec.name for spec in specs],
        effective=[],
        skipped={},
        presence={},
        n_columns={},
    )
    for spec in specs:
        if spec.kind == "slides":
            # NOTE: this is the table's slide list; whether features exist for those
            # slides is decided by the slide stages.
            present = pd.Series(
                [bool(cohort.slides[case_id]) for case_id in cohort.case_ids],
                index=cohort.case_ids,
            )
            result.presence[spec.name] = present
            result.effective.append(spec.name)
            continue

        columns = select_columns(spec, cohort.patients.columns)
        present = modality_presence(cohort.patients, columns)
        result.presence[spec.name] = present
        result.n_columns[spec.name] = len(columns)
        reason = None
        if not columns:
            reason = f"the selector {spec.selector_text} matches no column of {cohort.source}"
        elif not present.any():
            reason = (
                f"the {len(columns)} column(s) matched by {spec.selector_text} have no value "
                f"for any patient of {cohort.source}"
            )
        if reason is None:
            result.effective.append(spec.name)
            logger.info(
                "%s: modality %s has %d column(s) and %d of %d patients",
                cohort_name,
                spec.name,
                len(columns),
                int(present.sum()),
                len(present),
            )
            continue

        policy = on_empty or spec.on_empty
        message = f"cohort {cohort_name!r}: modality {spec.name!r} is empty because {reason}."
        if policy == "error":
            raise EmptyModalityError(
                message + f" Remove {spec.name!r} from cohorts.{cohort_name}.modalities, fix "
                f"the selector, or set on_empty: skip to leave it out of this cohort."
            )
        logger.warning("%s It is skipped (on_empty: skip).", message)
        result.skipped[spec.name] = reason
    return result


def _check_selector(name: str, selector: Mapping[str, Any]) -> None:
    key, value = next(iter(selector.items()))
    if key in ("suffix", "regex") and (not isinstance(value, str) or not value):
        raise ModalityConfigError(
            f"modalities.{name}.{key}: expected a non-empty string, found {value!r}."
        )
    if key == "regex":
        try:
            re.compile(value)
        except re.error as error:
            raise ModalityConfigError(
                f"modalities.{name}.regex: {value!r} is not a valid regular expression: {error}."
            ) from error
    if key == "columns" and (
        not isinstance(value, (list, tuple))
        or not value
        or not all(isinstance(v, str) for v in value)
    ):
        raise ModalityConfigError(
            f"modalities.{name}.columns: expected a non-empty list of column names, found {value!r}."
        )


def read_kept_modalities(path: str | Path) -> list[str]:
    """Return the modalities a cohort keeps, from the modalities.json of the cohort stage."""
    with open(path) as handle:
        return list(json.load(handle)["modalities"])
