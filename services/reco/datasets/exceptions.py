"""Errors raised by the dataset readers."""

from __future__ import annotations

from pathlib import Path

from reco.exceptions import RecoError


class DatasetError(RecoError):
    """Root of every error raised by :mod:`reco.datasets`."""


class DatasetFormatError(DatasetError, ValueError):
    """A row of a dataset file does not match the format it was read as."""

    def __init__(self, path: str | Path, line_number: int, reason: str) -> None:
        self.path = Path(path)
        self.line_number = line_number
        self.reason = reason
        super().__init__(f"{self.path}:{line_number}: {reason}")

    def __reduce__(self) -> tuple[type[DatasetFormatError], tuple[Path, int, str]]:
        # The default pickling passes only the message back to __init__.
        return (type(self), (self.path, self.line_number, self.reason))


class UnknownFormatError(DatasetError, ValueError):
    """The format name is not in :data:`reco.datasets.FORMATS`."""

    def __init__(self, fmt: str, known: list[str]) -> None:
        self.fmt = fmt
        super().__init__(f"unknown dataset format {fmt!r}; choose one of: {', '.join(known)}")


class NoItemsError(DatasetError, ValueError):
    """The format carries no item attributes, so there is nothing to read as items."""

    def __init__(self, fmt: str) -> None:
        self.fmt = fmt
        super().__init__(f"dataset format {fmt!r} has no item attributes; replay its events only")
