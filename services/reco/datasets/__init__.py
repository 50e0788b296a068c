"""Readers that stream public recommendation datasets as events in the engine's wire format.

Each format has one module; :data:`FORMATS` maps its name to a :class:`Reader`. Readers stream
(a file is never loaded whole), yield events in file order, and raise
:class:`DatasetFormatError` naming the file and line of the first malformed row instead of
skipping it.

>>> events = read_events("u.data", "movielens")  # doctest: +SKIP
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path

from reco.datasets import csv_events, diginetica, jsonl, movielens, rees46, session_tsv, taobao
from reco.datasets.base import Event, Item, Reader
from reco.datasets.exceptions import (
    DatasetError,
    DatasetFormatError,
    NoItemsError,
    UnknownFormatError,
)

__all__ = [
    "FORMATS",
    "DatasetError",
    "DatasetFormatError",
    "Event",
    "Item",
    "NoItemsError",
    "Reader",
    "UnknownFormatError",
    "get_reader",
    "has_items",
    "read_events",
    "read_items",
]

FORMATS: dict[str, Reader] = {
    module.READER.name: module.READER
    for module in (diginetica, movielens, taobao, rees46, session_tsv, csv_events, jsonl)
}


def get_reader(fmt: str) -> Reader:
    """Return the reader of format ``fmt``."""
    try:
        return FORMATS[fmt]
    except KeyError:
        raise UnknownFormatError(fmt, sorted(FORMATS)) from None


def has_items(fmt: str) -> bool:
    """Whether format ``fmt`` carries item attributes (so :func:`read_items` works)."""
    return get_reader(fmt).items is not None


def read_events(path: str | os.PathLike[str], fmt: str) -> Iterator[Event]:
    """Stream the events of the dataset file ``path`` read as format ``fmt``.

    The format and the file are checked at once; rows are read only as the iterator advances.
    """
    return get_reader(fmt).events(_existing_file(path))


def read_items(path: str | os.PathLike[str], fmt: str) -> Iterator[Item]:
    """Stream the items of the dataset whose events file is ``path``, each item once."""
    items = get_reader(fmt).items
    if items is None:
        raise NoItemsError(fmt)
    return items(_existing_file(path))


def _existing_file(path: str | os.PathLike[str]) -> Path:
    # errno and filename set, as open() would: callers tell a missing file from a directory.
    file = Path(path)
    if file.is_dir():
        raise IsADirectoryError(errno.EISDIR, "is a directory, not a dataset file", str(file))
    if not file.is_file():
        raise FileNotFoundError(errno.ENOENT, "dataset file not found", str(file))
    return file
