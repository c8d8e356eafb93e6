"""Cohort tables: read a PORPOISE-style table, check it and collapse it to one row per patient.

A cohort table has one row per slide or per patient, with ``case_id``, ``slide_id``
(optional), ``survival_months``, ``censorship`` (1 = censored, 0 = event), clinical
columns and omics columns. Rows of one patient must agree on every column but
``slide_id``; the slide ids are kept as the patient-to-slides mapping.

Row numbers in error messages count data rows from 1 in file order, so row ``n`` of a
CSV or TSV file is line ``n + 1`` (the header is line 1).
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mmlego.atomic import atomic_path

logger = logging.getLogger(__name__)

ID_COLUMN = "case_id"
SLIDE_COLUMN = "slide_id"
TIME_COLUMN = "survival_months"
CENSORSHIP_COLUMN = "censorship"
LABEL_COLUMNS = (TIME_COLUMN, CENSORSHIP_COLUMN)
# Columns that are never features: identifiers and survival labels.
RESERVED_COLUMNS = (ID_COLUMN, SLIDE_COLUMN, *LABEL_COLUMNS)

TABLE_SUFFIXES = (".csv", ".tsv", ".csv.zip", ".parquet")
# How many offending rows, patients or columns an error message lists before "and N more".
MAX_LISTED = 10


class CohortTableError(ValueError):
    """The cohort table is invalid; the message names the file, rows, patients and columns."""


@dataclass(frozen=True)
class Cohort:
    """One row per patient, plus the slide ids the table lists for each patient.

    ``patients`` is indexed by ``case_id`` in order of first appearance in the table and
    contains every table column except ``slide_id``. ``slides`` maps each case_id to its
    slide ids in table order (empty when the table has no ``slide_id`` column).
    """

    patients: pd.DataFrame
    slides: dict[str, tuple[str, ...]]
    source: str

    @property
    def case_ids(self) -> pd.Index:
        return self.patients.index

    def labels(self) -> pd.DataFrame:
        """Return ``survival_months`` (float), ``censorship`` and ``event`` (int, 1 - censorship)."""
        censorship = self.patients[CENSORSHIP_COLUMN].astype(np.int64)
        return pd.DataFrame(
            {
                TIME_COLUMN: self.patients[TIME_COLUMN].astype(np.float64),
                CENSORSHIP_COLUMN: censorship,
                "event": 1 - censorship,
            },
            index=self.patients.index,
        )


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a cohort table (.csv, .tsv, .csv.zip or .parquet) with ids as strings.

    A leading unnamed column (the index that pandas writes to CSV) is dropped.
    """
    path = Path(path)
    name = path.name.lower()
    string_ids = {ID_COLUMN: str, SLIDE_COLUMN: str}
    if name.endswith(".csv.zip"):
        table = pd.read_csv(path, compression="zip", dtype=string_ids)
    elif name.endswith(".csv"):
        table = pd.read_csv(path, dtype=string_ids)
    elif name.endswith(".tsv"):
        table = pd.read_csv(path, sep="\t", dtype=string_ids)
    elif name.endswith(".parquet"):
        table = pd.read_parquet(path)
        for column in string_ids:
            if column in table.columns:
                table[column] = table[column].astype("string").astype(object)
    else:
        raise CohortTableError(
            f"{path}: unsupported cohort table format; expected a file ending in "
            f"{', '.join(TABLE_SUFFIXES)}."
        )
    first = str(table.columns[0]) if len(table.columns) else ""
    if first == "" or first.startswith("Unnamed: 0"):
        table = table.drop(columns=table.columns[0])
    return table.reset_index(drop=True)


def validate_table(table: pd.DataFrame, *, source: str = "cohort table") -> None:
    """Raise ``CohortTableError`` listing every invalid row of the label and id columns.

    Checks: the columns ``case_id``, ``survival_months`` and ``censorship`` exist;
    ``case_id`` is non-empty; ``censorship`` is 0 or 1; ``survival_months`` is finite
    and not negative.
    """
    missing = [column for column in (ID_COLUMN, *LABEL_COLUMNS) if column not in table.columns]
    if missing:
        raise CohortTableError(
            f"{source}: missing required column(s) {missing}; a cohort table needs "
            f"{ID_COLUMN}, {TIME_COLUMN} and {CENSORSHIP_COLUMN}."
        )

    case_ids = table[ID_COLUMN]
    empty_id = case_ids.isna() | case_ids.astype(str).str.strip().eq("")
    censorship = pd.to_numeric(table[CENSORSHIP_COLUMN], errors="coerce")
    bad_censorship = ~censorship.isin([0, 1])
    times = pd.to_numeric(table[TIME_COLUMN], errors="coerce").to_numpy(dtype=float)
    bad_time = ~np.isfinite(times) | (times < 0)

    problems = []
    if empty_id.any():
        problems.append(f"empty {ID_COLUMN} in {_describe_rows(table, empty_id)}")
    if bad_censorship.any():
        problems.append(
            f"{CENSORSHIP_COLUMN} must be 0 (event) or 1 (censored), found "
            f"{_describe_rows(table, bad_censorship, CENSORSHIP_COLUMN)}"
        )
    if bad_time.any():
        problems.append(
            f"{TIME_COLUMN} must be finite and >= 0, found "
            f"{_describe_rows(table, pd.Series(bad_time, index=table.index), TIME_COLUMN)}"
        )
    if problems:
        raise CohortTableError(
            f"{source}: invalid rows (numbered from 1 after the header):\n- "
            + "\n- ".join(problems)
            + "\nFix these rows in the table or remove them."
        )


def collapse_to_patients(
    table: pd.DataFrame, *, source: str = "cohort table"
) -> tuple[pd.DataFrame, dict[str, tuple[str, ...]]]:
    """Collapse slide rows to one row per patient and collect each patient's slide ids.

    Rows of the same ``case_id`` must agree on every column but ``slide_id``, where two
    missing values count as equal; otherwise ``CohortTableError`` names the patients and
    the columns that disagree.
    """
    case_ids = table[ID_COLUMN].astype(str)
    checked = [column for column in table.columns if column not in (ID_COLUMN, SLIDE_COLUMN)]
    first_row = _first_row_positions(case_ids)
    conflicts = _conflicting_columns(table[checked], case_ids, first_row)
    if conflicts:
        raise CohortTableError(
            f"{source}: rows of the same patient disagree; each patient's rows may differ "
            f"only in {SLIDE_COLUMN}. Conflicts:\n- "
            + "\n- ".join(
                f"{case_id}: {_limited(columns)}" for case_id, columns in _limited_items(conflicts)
            )
            + _more_suffix(len(conflicts), "patients")
        )

    is_first = first_row == np.arange(len(table))
    patients = table.loc[is_first, checked].copy()
    patients.index = pd.Index(case_ids[is_first].to_numpy(), name=ID_COLUMN)

    slides: dict[str, tuple[str, ...]] = {case_id: () for case_id in patients.index}
    if SLIDE_COLUMN in table.columns:
        for case_id, slide_ids in table.groupby(case_ids, sort=False)[SLIDE_COLUMN]:
            # dict.fromkeys keeps the first occurrence of each slide id, in table order.
            slides[case_id] = tuple(dict.fromkeys(slide_ids.dropna().astype(str)))
    return patients, slides


def cohort_from_table(table: pd.DataFrame, *, source: str = "cohort table") -> Cohort:
    """Validate a cohort table and collapse it to one row per patient."""
    validate_table(table, source=source)
    patients, slides = collapse_to_patients(table, source=source)
    patients[TIME_COLUMN] = pd.to_numeric(patients[TIME_COLUMN]).astype(np.float64)
    patients[CENSORSHIP_COLUMN] = pd.to_numeric(patients[CENSORSHIP_COLUMN]).astype(np.int64)
    logger.info(
        "%s: %d rows, %d patients, %d events",
        source,
        len(table),
        len(patients),
        int((patients[CENSORSHIP_COLUMN] == 0).sum()),
    )
    return Cohort(patients=patients, slides=slides, source=source)


def load_cohort(path: str | Path) -> Cohort:
    """Read, validate and collapse the cohort table at ``path``."""
    return cohort_from_table(read_table(path), source=str(path))


def cohort_summary(cohort: Cohort, presence: Mapping[str, pd.Series]) -> pd.DataFrame:
    """Build the rows of cohort.tsv: labels, slide ids and ``has_<modality>`` per patient."""
    summary = cohort.labels()
    summary["slide_ids"] = [";".join(cohort.slides[case_id]) for case_id in summary.index]
    for name, present in presence.items():
        summary[f"has_{name}"] = present.reindex(summary.index).astype(bool)
    return summary


def write_cohort_tsv(summary: pd.DataFrame, path: str | Path) -> None:
    """Write cohort.tsv atomically (tab-separated, booleans as true/false)."""
    frame = summary.reset_index()
    for column in frame.columns:
        if frame[column].dtype == bool:
            frame[column] = frame[column].map({True: "true", False: "false"})
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, sep="\t", index=False)


def read_cohort_labels(path: str | Path) -> pd.DataFrame:
    """Read the labels of a cohort.tsv: index case_id; survival_months, censorship, event."""
    summary = pd.read_csv(path, sep="\t", dtype={ID_COLUMN: str}, index_col=ID_COLUMN)
    return summary[[TIME_COLUMN, CENSORSHIP_COLUMN, "event"]].astype(
        {TIME_COLUMN: np.float64, CENSORSHIP_COLUMN: np.int64, "event": np.int64}
    )


def write_cohort_files(
    table_path: str | Path,
    cohort_tsv: str | Path,
    modalities_json: str | Path,
    *,
    cohort_name: str,
    cohort_config: Mapping,
    modalities_config: Mapping,
) -> Cohort:
    """Load a cohort table and write its cohort.tsv and modalities.json.

    ``cohort_config`` is one entry of the config's ``cohorts`` section and
    ``modalities_config`` the ``modalities`` section. modalities.json lists the
    configured and the kept modalities, the reason each skipped one was skipped, and
    column and patient counts.
    """
    from mmlego.modalities import check_cohort_modalities, parse_modalities

    specs = parse_modalities(modalities_config)
    cohort = load_cohort(table_path)
    report = check_cohort_modalities(
        cohort,
        [specs[name] for name in cohort_config.get("modalities", [])],
        cohort_name=cohort_name,
        on_empty=cohort_config.get("on_empty"),
    )
    write_cohort_tsv(cohort_summary(cohort, report.presence), cohort_tsv)
    with atomic_path(modalities_json) as tmp:
        tmp.write_text(json.dumps(report.to_json(), indent=2) + "\n")
    return cohort


def build_cohort_outputs(
    table_path: str | Path,
    output_dir: str | Path,
    *,
    cohort_name: str,
    cohort_config: Mapping,
    modalities_config: Mapping,
) -> dict[str, Path]:
    """Write cohort.tsv, modalities.json and splits/fold_{k}.json for one cohort.

    Returns the written paths by name ("cohort", "modalities", "fold_0", ...).
    """
    from mmlego.splits import SplitConfig, make_folds, write_fold_json

    output_dir = Path(output_dir)
    written = {"cohort": output_dir / "cohort.tsv", "modalities": output_dir / "modalities.json"}
    cohort = write_cohort_files(
        table_path,
        written["cohort"],
        written["modalities"],
        cohort_name=cohort_name,
        cohort_config=cohort_config,
        modalities_config=modalities_config,
    )
    split_config = SplitConfig.from_mapping(cohort_config.get("splits") or {})
    for fold in make_folds(cohort.labels(), split_config, cohort_name=cohort_name):
        path = output_dir / "splits" / f"fold_{fold.fold}.json"
        write_fold_json(fold, path)
        written[f"fold_{fold.fold}"] = path
    return written


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: write cohort.tsv, modalities.json and the split files of one cohort."""
    import yaml

    from mmlego.logs import setup_logging

    parser = argparse.ArgumentParser(prog="mmlego cohort", description=main.__doc__)
    parser.add_argument("--config", required=True, help="workflow config YAML")
    parser.add_argument("--cohort", required=True, help="cohort name, a key of `cohorts`")
    parser.add_argument("--table", help="cohort table (default: the cohort's `table` key)")
    parser.add_argument(
        "--output-dir", help="directory for the outputs (default: results/<cohort>)"
    )
    args = parser.parse_args(argv)
    setup_logging()

    with open(args.config) as handle:
        config = yaml.safe_load(handle) or {}
    cohorts = config.get("cohorts") or {}
    if args.cohort not in cohorts:
        parser.error(
            f"cohort {args.cohort!r} not found in {args.config} (found {sorted(cohorts)})"
        )
    cohort_config = cohorts[args.cohort]
    written = build_cohort_outputs(
        args.table or cohort_config["table"],
        args.output_dir or Path("results") / args.cohort,
        cohort_name=args.cohort,
        cohort_config=cohort_config,
        modalities_config=config.get("modalities") or {},
    )
    for path in written.values():
        logger.info("wrote %s", path)
    return 0


def _first_row_positions(case_ids: pd.Series) -> np.ndarray:
    """Position of the first row of each row's patient."""
    positions = pd.Series(np.arange(len(case_ids)))
    return positions.groupby(case_ids.to_numpy(), sort=False).transform("min").to_numpy()


def _conflicting_columns(
    values: pd.DataFrame, case_ids: pd.Series, first_row: np.ndarray
) -> dict[str, list[str]]:
    """Map case_id to the columns where one of its rows differs from its first row."""
    repeated = np.flatnonzero(first_row != np.arange(len(values)))
    if not len(repeated):
        return {}
    rows = values.iloc[repeated]
    reference = values.iloc[first_row[repeated]]
    differs = np.zeros(rows.shape, dtype=bool)
    numeric = [i for i, dtype in enumerate(values.dtypes) if pd.api.types.is_numeric_dtype(dtype)]
    if numeric:
        a = rows.iloc[:, numeric].to_numpy(dtype=float)
        b = reference.iloc[:, numeric].to_numpy(dtype=float)
        differs[:, numeric] = ~((a == b) | (np.isnan(a) & np.isnan(b)))
    for i in sorted(set(range(values.shape[1])) - set(numeric)):
        a = rows.iloc[:, i].to_numpy(dtype=object)
        b = reference.iloc[:, i].to_numpy(dtype=object)
        differs[:, i] = ~((pd.isna(a) & pd.isna(b)) | (a == b))

    conflicts: dict[str, list[str]] = {}
    for row in np.flatnonzero(differs.any(axis=1)):
        columns = conflicts.setdefault(str(case_ids.iloc[repeated[row]]), [])
        columns += [str(c) for c in values.columns[differs[row]] if str(c) not in columns]
    return conflicts


def _describe_rows(table: pd.DataFrame, mask: pd.Series, column: str | None = None) -> str:
    positions = np.flatnonzero(mask.to_numpy())
    parts = []
    for position in positions[:MAX_LISTED]:
        case_id = table[ID_COLUMN].iloc[position]
        text = f"row {position + 1} ({ID_COLUMN} {case_id!r}"
        if column is not None:
            value = table[column].iloc[position]
            text += f", {column} {value!r}" if isinstance(value, str) else f", {column} {value}"
        parts.append(text + ")")
    return ", ".join(parts) + _more_suffix(len(positions), "rows")


def _limited(items: Sequence[str]) -> str:
    shown = ", ".join(items[:MAX_LISTED])
    return shown + _more_suffix(len(items), "columns")


def _limited_items(mapping: Mapping[str, list[str]]) -> list[tuple[str, list[str]]]:
    return list(mapping.items())[:MAX_LISTED]


def _more_suffix(count: int, noun: str) -> str:
    return f" and {count - MAX_LISTED} more {noun}" if count > MAX_LISTED else ""
