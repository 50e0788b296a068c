"""MovieLens 100K (``ml-100k``): ``u.data`` ratings as views, ``u.item`` movies as items.

Every rating becomes a ``view`` carrying the rating in its properties, so the caller decides
whether only high ratings count as positives. An item's category is its first genre flag in
the order of the ml-100k README.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from reco.datasets.base import Event, Item, Reader, parse_int, require, split_rows
from reco.datasets.exceptions import DatasetFormatError

GENRES = (
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)
ITEM_FILE = "u.item"
_ITEM_FIELDS = 5  # id, title, release date, video release date, IMDb URL; then the genre flags


def read_events(path: Path) -> Iterator[Event]:
    """Stream ``user \\t item \\t rating \\t unix_ts`` rows in file order (not time order)."""
    for line, (user, item, rating, timestamp) in split_rows(path, "\t", 4):
        yield {
            "user_id": require(path, line, "user_id", user),
            "item_id": require(path, line, "item_id", item),
            "type": "view",
            "timestamp": float(parse_int(path, line, "timestamp", timestamp)),
            "properties": {"rating": _rating(path, line, rating)},
        }


def _rating(path: Path, line: int, value: str) -> int:
    rating = parse_int(path, line, "rating", value)
    if not 1 <= rating <= 5:
        raise DatasetFormatError(path, line, f"rating {rating} is outside 1-5")
    return rating


def read_items(path: Path) -> Iterator[Item]:
    """Stream the movies of the ``u.item`` beside ``path`` (``path`` may be ``u.item`` itself)."""
    items = path if path.name == ITEM_FILE else path.with_name(ITEM_FILE)
    width = _ITEM_FIELDS + len(GENRES)
    for line, fields in split_rows(items, "|", width, encoding="latin-1"):
        item: Item = {"item_id": require(items, line, "movie id", fields[0]), "title": fields[1]}
        genre = _first_genre(items, line, fields[_ITEM_FIELDS:])
        if genre is not None:
            item["category"] = genre
        item["in_stock"] = True
        yield item


def _first_genre(path: Path, line: int, flags: list[str]) -> str | None:
    if any(flag not in ("0", "1") for flag in flags):
        raise DatasetFormatError(path, line, f"genre flags must be 0 or 1, got {'|'.join(flags)}")
    return next((genre for genre, flag in zip(GENRES, flags, strict=True) if flag == "1"), None)


READER = Reader(
    "movielens", "MovieLens 100K u.data ratings (+ u.item movies)", read_events, read_items
)
