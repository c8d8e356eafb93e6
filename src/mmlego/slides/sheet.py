"""The slide sheet: one row per slide with slide_id, case_id, path and an optional mpp."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

SHEET_COLUMNS = ("slide_id", "case_id", "path", "mpp")


def read_slide_sheet(path: str | Path | None) -> pd.DataFrame:
    """Read a tab-separated slide sheet (lines starting with # are comments).

    Returns an empty sheet when ``path`` is None. Raises ``ValueError`` when a slide_id
    appears more than once, because outputs are named by slide_id.
    """
    if path is None:
        return pd.DataFrame(columns=list(SHEET_COLUMNS))
    sheet = pd.read_csv(path, sep="\t", comment="#",
                        dtype={"slide_id": str, "case_id": str, "path": str})
    if "slide_id" in sheet:
        duplicated = sorted(set(sheet["slide_id"][sheet["slide_id"].duplicated()]))
        if duplicated:
            raise ValueError(f"Slide sheet {path}: slide_id must be unique, but {duplicated} appear "
                             f"more than once. Give each slide its own slide_id.")
    return sheet


def slide_rows(sheet: pd.DataFrame) -> dict[str, dict]:
    """Return the sheet's rows by slide_id, with empty cells (a missing mpp) as None."""
    rows = sheet.astype(object).where(sheet.notna(), None).to_dict("records")
    return {row["slide_id"]: row for row in rows}


def encoder_dirname(name: str) -> str:
    """Return the folder name for an encoder's features: ``timm:vit_small`` → ``timm-vit_small``."""
    return re.sub(r"[^A-Za-z0-9_.-]", "-", name)
