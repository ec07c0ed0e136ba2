"""Aligned plain-text tables for the command line."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any


def when(value: datetime | None, missing: str = "-") -> str:
    """A moment to the second, as every command shows one."""
    return value.strftime("%Y-%m-%d %H:%M:%S") if value is not None else missing


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Columns padded to their widest cell, headings first."""
    cells = [[str(h) for h in headers]] + [["" if v is None else str(v) for v in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join(
        "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in cells
    )
