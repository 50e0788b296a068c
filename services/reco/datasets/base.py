"""Pieces every dataset reader shares: the record types, the registry entry, row iteration and
field parsing that turn a bad value into a :class:`DatasetFormatError` naming file and line."""

from __future__ import annotations

import csv
import gzip
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from reco.datasets.exceptions import DatasetFormatError

Event = dict[str, Any]
"""One event in the engine's wire format."""

Item = dict[str, Any]
"""One catalogue item: item_id plus whichever of title, category, price, in_stock are known."""

EventReader = Callable[[Path], Iterator[Event]]
ItemReader = Callable[[Path], Iterator[Item]]


@dataclass(frozen=True)
class Reader:
    """A dataset format: how to stream its events and, where it has them, its items."""

    name: str
    summary: str
    events: EventReader
    items: ItemReader | None = None


def open_text(path: Path, encoding: str = "utf-8-sig") -> TextIO:
    """Open a dataset file for reading text; ``.gz`` files are decompressed on the fly.

    ``utf-8-sig`` drops the byte-order mark that spreadsheet exports put in front of a header.
    """
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding=encoding, newline="")
    return path.open(encoding=encoding, newline="")


def split_rows(
    path: Path,
    sep: str,
    width: int,
    *,
    header: str | None = None,
    encoding: str = "utf-8-sig",
) -> Iterator[tuple[int, list[str]]]:
    """Yield ``(line_number, fields)`` of a delimited file that never quotes its fields.

    ``str.split`` is several times faster than :mod:`csv` and these formats never quote.
    Blank lines (a trailing newline, typically) carry no row and are passed over.
    """
    with open_text(path, encoding) as lines:
        if header is not None:
            _expect_header(path, lines.readline().rstrip("\r\n"), header)
        first = 1 if header is None else 2
        for number, line in enumerate(lines, first):
            line = line.rstrip("\r\n")
            if not line:
                continue
            fields = line.split(sep)
            if len(fields) != width:
                raise DatasetFormatError(
                    path, number, f"expected {width} fields, got {len(fields)}"
                )
            yield number, fields


def _expect_header(path: Path, found: str, expected: str) -> None:
    if found != expected:
        raise DatasetFormatError(path, 1, f"expected the header {expected!r}, got {found!r}")


def table_rows(
    path: Path, delimiter: str, required: Sequence[str]
) -> Iterator[tuple[int, dict[str, str]]]:
    """Yield ``(line_number, row)`` of a CSV-style file whose first line names the columns."""
    with open_text(path) as lines:
        reader = csv.reader(lines, delimiter=delimiter)
        header = _table_header(path, reader, required)
        try:
            for fields in reader:
                if not fields:
                    continue
                if len(fields) != len(header):
                    raise DatasetFormatError(
                        path, reader.line_num, f"expected {len(header)} fields, got {len(fields)}"
                    )
                yield reader.line_num, dict(zip(header, fields, strict=True))
        except csv.Error as error:
            raise DatasetFormatError(path, reader.line_num, str(error)) from None


def _table_header(path: Path, reader: Iterator[list[str]], required: Sequence[str]) -> list[str]:
    try:
        header = next(reader)
    except StopIteration:
        reason = f"empty file; expected a header with {', '.join(required)}"
        raise DatasetFormatError(path, 1, reason) from None
    missing = [column for column in required if column not in header]
    if missing:
        raise DatasetFormatError(path, 1, f"header lacks column(s) {', '.join(missing)}")
    return header


def require(path: Path, line: int, field: str, value: str) -> str:
    """Return ``value`` unless it is empty."""
    if not value:
        raise DatasetFormatError(path, line, f"{field} is empty")
    return value


def parse_float(path: Path, line: int, field: str, value: str) -> float:
    """Parse a finite number; ``nan`` and ``inf`` are malformed data here."""
    try:
        number = float(value)
    except ValueError:
        raise DatasetFormatError(path, line, f"{field} {value!r} is not a number") from None
    if not math.isfinite(number):
        raise DatasetFormatError(path, line, f"{field} {value!r} is not a finite number")
    return number


def parse_int(path: Path, line: int, field: str, value: str) -> int:
    """Parse a base-10 integer."""
    try:
        return int(value)
    except ValueError:
        raise DatasetFormatError(path, line, f"{field} {value!r} is not an integer") from None
