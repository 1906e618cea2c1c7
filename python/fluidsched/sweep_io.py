"""A sweep's result rows: their columns, the CSV file they are appended to as runs finish, resuming from it, the
final file in grid order (CSV, or Parquet with pyarrow) and the in-memory forms (numpy record array, DataFrame)."""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from fluidsched.errors import InvalidConfigError
from fluidsched.simulate import SUMMARY_KEYS

__all__ = [
    "COLUMNS",
    "COORDINATE_COLUMNS",
    "RowWriter",
    "read_rows",
    "row_key",
    "to_frame",
    "to_records",
    "write_final",
]

#: The grid's coordinates of a row, then what identifies the settings every run shared (``settings_id``).
COORDINATE_COLUMNS: tuple[str, ...] = ("workload", "policy", "options", "rate", "load", "seed", "settings_id")
#: The fluid model's view of the row's workload at its rate (``fluidsched plan``): the largest stable rate for the
#: same mix, the fluid-optimal throughput, and the fluid throughput serving every type of the mix.
FLUID_COLUMNS: tuple[str, ...] = (
    "max_rate_per_s",
    "fluid_throughput_tokens_per_s",
    "fluid_mix_throughput_tokens_per_s",
)
#: Every column of a sweep's results, in order: coordinates, fluid columns, then ``SimResult.summary()``'s keys.
COLUMNS: tuple[str, ...] = COORDINATE_COLUMNS + FLUID_COLUMNS + SUMMARY_KEYS

_TEXT_COLUMNS = frozenset({"workload", "policy", "options", "settings_id"})
_INT_COLUMNS = frozenset({"seed", "num_requests", "num_finished", "num_rejected", "num_preemptions", "num_iterations"})

RowKey = tuple[str, str, str, float, int, str]


def row_key(row: dict[str, Any]) -> RowKey:
    """What identifies a run across files: workload, policy, options, rate, seed and settings."""
    return (row["workload"], row["policy"], row["options"], float(row["rate"]), int(row["seed"]), row["settings_id"])


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return repr(value)  # round-trips exactly; nan and inf as nan / inf
    return str(value)


def _parse(column: str, text: str) -> Any:
    if column in _TEXT_COLUMNS:
        return text
    if column in _INT_COLUMNS:
        return int(text)
    return float(text)


class RowWriter:
    """Appends rows to a CSV file as runs finish (header first when the file is new), flushing each row so an
    interrupted sweep keeps every finished run."""

    def __init__(self, path: Path) -> None:
        self.path = path
        new = not path.exists() or path.stat().st_size == 0
        cut_short = not new and _last_byte(path) != b"\n"
        self._file: TextIO = open(path, "a", newline="")  # noqa: SIM115 (closed by close())
        self._writer = csv.writer(self._file)
        if cut_short:  # a row cut short by a crash: end it, so the next row starts on a line of its own
            self._file.write("\n")
        if new:
            self._writer.writerow(COLUMNS)
            self._file.flush()

    def write(self, row: dict[str, Any]) -> None:
        """Appends one row."""
        self._writer.writerow([_cell(row[c]) for c in COLUMNS])
        self._file.flush()

    def close(self) -> None:
        """Closes the file."""
        self._file.close()


def _last_byte(path: Path) -> bytes:
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1)


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of a results file written by a sweep (CSV, or Parquet for ``.parquet``); checks its columns."""
    if path.suffix == ".parquet":
        pq = _pyarrow_parquet(path)
        table = pq.read_table(path)
        names = tuple(table.column_names)
        _check_columns(path, names)
        rows: list[dict[str, Any]] = table.to_pylist()
        return rows
    with open(path, newline="") as f:
        lines = f.read().splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines.pop()  # a row cut short by a crash mid-write (rows are whole lines): run it again
    reader = csv.reader(lines)
    header = next(reader, None)
    if header is None:
        return []
    _check_columns(path, tuple(header))
    out = []
    for line, cells in enumerate(reader, start=2):
        if not cells:
            continue
        try:
            if len(cells) != len(COLUMNS):
                raise ValueError
            out.append({c: _parse(c, v) for c, v in zip(COLUMNS, cells, strict=True)})
        except ValueError:
            raise InvalidConfigError(f"{path}, line {line}: not a sweep result row") from None
    return out


def _check_columns(path: Path, names: tuple[str, ...]) -> None:
    if names != COLUMNS:
        raise InvalidConfigError(
            f"{path} does not hold this version's sweep results (its columns differ); remove it or choose another file"
        )


def write_final(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    """Writes ``rows`` to ``path`` as a whole (CSV, or Parquet for ``.parquet``), replacing it atomically."""
    tmp = path.with_name(path.name + ".tmp")
    if path.suffix == ".parquet":
        pq = _pyarrow_parquet(path)
        import pyarrow as pa

        table = pa.table({c: [r[c] for r in rows] for c in COLUMNS})
        pq.write_table(table, tmp)
    else:
        with open(tmp, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(COLUMNS)
            writer.writerows([_cell(r[c]) for c in COLUMNS] for r in rows)
    os.replace(tmp, path)


def _pyarrow_parquet(path: Path) -> Any:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise InvalidConfigError(
            f"{path}: writing Parquet needs pyarrow (pip install pyarrow), or give a .csv file"
        ) from None
    return pq


def to_records(rows: Iterable[dict[str, Any]]) -> np.recarray[Any, Any]:
    """The rows as a numpy record array with one field per column (text as str, counts as int64)."""
    rows = list(rows)
    fields = []
    for c in COLUMNS:
        if c in _TEXT_COLUMNS:
            width = max((len(r[c]) for r in rows), default=1) or 1
            fields.append((c, f"U{width}"))
        else:
            fields.append((c, "i8" if c in _INT_COLUMNS and c != "seed" else ("u8" if c == "seed" else "f8")))
    data = [tuple(r[c] for c in COLUMNS) for r in rows]
    return np.rec.fromrecords(data, dtype=fields) if data else np.recarray((0,), dtype=fields)


def to_frame(rows: Iterable[dict[str, Any]]) -> Any:
    """The rows as a pandas DataFrame (needs pandas)."""
    try:
        import pandas as pd
    except ImportError:
        raise InvalidConfigError("as_frame=True needs pandas (pip install pandas)") from None
    return pd.DataFrame.from_records(list(rows), columns=list(COLUMNS))
