"""The dataset readers against the real dataset files and small files written here.

Expected counts come from each dataset's source (docs/datasets.md). The files are looked up
in ``$RECO_DATASETS`` or, without it, ``<repo>/../shared/data``; tests that need them skip,
saying where they looked, when they are absent.
"""

from __future__ import annotations

import gzip
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reco.catalog import ItemIn
from reco.datasets import (
    FORMATS,
    DatasetFormatError,
    NoItemsError,
    UnknownFormatError,
    has_items,
    read_events,
    read_items,
)
from reco.events import EventIn

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
DIGINETICA = "diginetica-sample/sample_train-item-views.csv"
MOVIELENS = "movielens-100k/u.data"
TAOBAO = "taobao-userbehavior-sample/UserBehavior.csv"
REES46 = "rees46-ecommerce-oct2019-sample/2019-Oct-sample.csv"
REAL_FILES = {"diginetica": DIGINETICA, "movielens": MOVIELENS, "taobao": TAOBAO, "rees46": REES46}


def shared_data() -> Path:
    configured = os.environ.get("RECO_DATASETS")
    return Path(configured) if configured else REPO.parent / "shared" / "data"


def shared_file(relative: str) -> Path:
    path = shared_data() / relative
    if not path.is_file():
        pytest.skip(f"{path} is absent: set RECO_DATASETS (docs/datasets.md)")
    return path


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_text(text, encoding=encoding)
    return path


def distinct(records: list[dict[str, Any]], key: str) -> int:
    return len({record[key] for record in records if key in record})


# --- the registry -------------------------------------------------------------------------


def test_registry_lists_every_format() -> None:
    expected = {"diginetica", "movielens", "taobao", "rees46", "session-tsv", "csv", "jsonl"}
    assert set(FORMATS) == expected
    assert {name for name in FORMATS if has_items(name)} == {"movielens", "taobao", "rees46"}


def test_unknown_format_names_the_known_ones(tmp_path: Path) -> None:
    path = write(tmp_path / "events.txt", "")
    with pytest.raises(UnknownFormatError, match="choose one of: csv, diginetica"):
        read_events(path, "parquet")


def test_items_of_a_format_without_items_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path / "views.tsv", "SessionId\tItemId\tTime\n")
    with pytest.raises(NoItemsError, match="session-tsv"):
        read_items(path, "session-tsv")


def test_missing_file_fails_before_iteration(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"absent\.csv"):
        read_events(tmp_path / "absent.csv", "csv")


# --- Diginetica ---------------------------------------------------------------------------


def test_diginetica_matches_source_statistics() -> None:
    events = list(read_events(shared_file(DIGINETICA), "diginetica"))
    assert len(events) == 12_391
    assert distinct(events, "session_id") == 2_986
    assert distinct(events, "item_id") == 7_139
    logged_in = [e for e in events if not e["user_id"].startswith("s")]
    assert len(logged_in) == 4_710
    assert distinct(logged_in, "user_id") == 1_270
    assert {e["type"] for e in events} == {"view"}
    assert not any("event_id" in e for e in events)


def test_diginetica_timestamp_and_anonymous_user() -> None:
    events = list(read_events(shared_file(DIGINETICA), "diginetica"))
    # Row 1;NA;81766;526309;2016-05-09: 2016-05-09T00:00Z is 1462752000, plus 526.309 s.
    assert events[0] == {
        "user_id": "s1",
        "item_id": "81766",
        "type": "view",
        "timestamp": pytest.approx(1_462_752_526.309),
        "session_id": "1",
        "properties": {},
    }
    # Row 48;2;24764;8863;2016-04-09: a logged-in user keeps the dataset's user id.
    row = next(e for e in events if e["session_id"] == "48")
    assert row["user_id"] == "2"
    assert row["item_id"] == "24764"
    assert row["timestamp"] == pytest.approx(1_460_160_000 + 8.863)


# --- MovieLens ----------------------------------------------------------------------------


def test_movielens_matches_source_statistics() -> None:
    events = list(read_events(shared_file(MOVIELENS), "movielens"))
    assert len(events) == 100_000
    assert distinct(events, "user_id") == 943
    assert distinct(events, "item_id") == 1_682
    ratings = Counter(e["properties"]["rating"] for e in events)
    assert ratings == {1: 6_110, 2: 11_370, 3: 27_145, 4: 34_174, 5: 21_201}
    assert {e["type"] for e in events} == {"view"}
    timestamps = [e["timestamp"] for e in events]
    assert (min(timestamps), max(timestamps)) == (874_724_710.0, 893_286_638.0)


def test_movielens_first_and_last_rows() -> None:
    events = list(read_events(shared_file(MOVIELENS), "movielens"))
    assert events[0] == {
        "user_id": "196",
        "item_id": "242",
        "type": "view",
        "timestamp": 881_250_949.0,
        "properties": {"rating": 3},
    }
    assert (events[-1]["user_id"], events[-1]["item_id"]) == ("12", "203")


def test_movielens_items_take_title_and_first_genre() -> None:
    items = {item["item_id"]: item for item in read_items(shared_file(MOVIELENS), "movielens")}
    assert len(items) == 1_682
    assert items["1"] == {
        "item_id": "1",
        "title": "Toy Story (1995)",
        "category": "Animation",
        "in_stock": True,
    }
    assert items["2"]["category"] == "Action"
    assert items["267"]["category"] == "unknown"
    assert items["543"]["title"] == "Misérables, Les (1995)"  # Latin-1 in the file
    assert all("price" not in item for item in items.values())


def test_movielens_items_accept_the_item_file_itself() -> None:
    path = shared_file(MOVIELENS).with_name("u.item")
    assert sum(1 for _ in read_items(path, "movielens")) == 1_682


# --- Taobao -------------------------------------------------------------------------------


def test_taobao_matches_source_statistics() -> None:
    events = list(read_events(shared_file(TAOBAO), "taobao"))
    assert len(events) == 4_321
    assert distinct(events, "user_id") == 43
    assert distinct(events, "item_id") == 3_276
    assert len({e["properties"]["category"] for e in events}) == 567
    types = Counter(e["type"] for e in events)
    assert types == {"view": 3_926, "cart": 190, "fav": 128, "purchase": 77}
    timestamps = [e["timestamp"] for e in events]
    assert (min(timestamps), max(timestamps)) == (1_505_117_799.0, 1_512_316_753.0)


def test_taobao_first_row_and_items() -> None:
    path = shared_file(TAOBAO)
    assert next(read_events(path, "taobao")) == {
        "user_id": "1",
        "item_id": "2268318",
        "type": "view",
        "timestamp": 1_511_544_070.0,
        "properties": {"category": "2520377"},
    }
    items = list(read_items(path, "taobao"))
    assert len(items) == distinct(items, "item_id") == 3_276
    assert items[0] == {"item_id": "2268318", "category": "2520377", "in_stock": True}


# --- REES46 -------------------------------------------------------------------------------


def test_rees46_matches_source_statistics() -> None:
    events = list(read_events(shared_file(REES46), "rees46"))
    assert len(events) == 1_000
    assert Counter(e["type"] for e in events) == {"view": 987, "cart": 3, "purchase": 10}
    assert distinct(events, "user_id") == 330
    assert distinct(events, "session_id") == 372
    assert distinct(events, "item_id") == 534
    assert events[-1]["timestamp"] == 1_569_889_046.0  # 2019-10-01 00:17:26 UTC


def test_rees46_first_row() -> None:
    event = next(read_events(shared_file(REES46), "rees46"))
    assert event == {
        "user_id": "541312140",
        "item_id": "44600062",
        "type": "view",
        "timestamp": 1_569_888_000.0,  # 2019-10-01 00:00:00 UTC
        "session_id": "72d76fde-8bb3-4e00-8c23-a032dfed738c",
        # No category_code on this row, so the category is the category_id.
        "properties": {"category": "2103807459595387724", "brand": "shiseido", "price": 35.79},
    }


def test_rees46_items() -> None:
    items = {item["item_id"]: item for item in read_items(shared_file(REES46), "rees46")}
    assert len(items) == 534
    assert items["3900821"] == {
        "item_id": "3900821",
        "title": "aqua appliances.environment.water_heater",
        "category": "appliances.environment.water_heater",
        "price": 33.2,
        "in_stock": True,
    }
    assert items["44600062"]["title"] == "shiseido"
    assert items["17200506"]["title"] == "furniture.living_room.sofa"


def test_rees46_remove_from_cart_and_missing_values(tmp_path: Path) -> None:
    path = write(
        tmp_path / "2019-Nov.csv",
        "event_time,event_type,product_id,category_id,category_code,brand,price,user_id,user_session\n"
        "2019-11-01 00:00:00 UTC,remove_from_cart,5,77,,,,9,\n",
    )
    assert list(read_events(path, "rees46")) == [
        {
            "user_id": "9",
            "item_id": "5",
            "type": "remove_from_cart",
            "timestamp": 1_572_566_400.0,
            "properties": {"category": "77"},
        }
    ]
    assert list(read_items(path, "rees46")) == [
        {"item_id": "5", "category": "77", "in_stock": True}
    ]


# --- the engine accepts what the readers produce ------------------------------------------


@pytest.mark.parametrize("fmt", sorted(REAL_FILES))
def test_real_events_and_items_fit_the_wire_schemas(fmt: str) -> None:
    path = shared_file(REAL_FILES[fmt])
    for event in _head(read_events(path, fmt), 2_000):
        EventIn.model_validate(event)
    if has_items(fmt):
        for item in _head(read_items(path, fmt), 2_000):
            ItemIn.model_validate(item)


def _head(records: Iterator[dict[str, Any]], count: int) -> Iterator[dict[str, Any]]:
    return (record for _, record in zip(range(count), records, strict=False))


# --- formats written here -----------------------------------------------------------------


def test_session_tsv(tmp_path: Path) -> None:
    path = write(tmp_path / "test.tsv", "SessionId\tItemId\tTime\n7\t214\t1396839069.277\n")
    assert list(read_events(path, "session-tsv")) == [
        {
            "user_id": "s7",
            "item_id": "214",
            "type": "view",
            "timestamp": 1_396_839_069.277,
            "session_id": "7",
            "properties": {},
        }
    ]


def test_gzipped_files_are_read_transparently(tmp_path: Path) -> None:
    path = tmp_path / "test.tsv.gz"
    with gzip.open(path, "wt", encoding="utf-8") as file:
        file.write("SessionId\tItemId\tTime\n1\t2\t3\n1\t4\t5\n")
    assert [e["item_id"] for e in read_events(path, "session-tsv")] == ["2", "4"]


def test_csv_maps_wire_fields_and_keeps_the_rest_as_properties(tmp_path: Path) -> None:
    path = write(
        tmp_path / "events.csv",
        "user_id,item_id,type,timestamp,session_id,event_id,channel,coupon\n"
        "u1,i1,click,1700000000.5,s1,e1,web,\n"
        "u2,i2,purchase,2023-11-14T22:13:20Z,,,app,X10\n",
    )
    assert list(read_events(path, "csv")) == [
        {
            "user_id": "u1",
            "item_id": "i1",
            "type": "click",
            "timestamp": 1_700_000_000.5,
            "session_id": "s1",
            "event_id": "e1",
            "properties": {"channel": "web"},
        },
        {
            "user_id": "u2",
            "item_id": "i2",
            "type": "purchase",
            "timestamp": 1_700_000_000.0,
            "properties": {"channel": "app", "coupon": "X10"},
        },
    ]


def test_jsonl_passes_objects_through(tmp_path: Path) -> None:
    first = {"user_id": "u", "item_id": "i", "type": "view", "timestamp": 1.5, "extra": [1]}
    second = {"user_id": "v", "item_id": "j", "type": "cart"}
    path = write(
        tmp_path / "events.jsonl",
        '{"user_id": "u", "item_id": "i", "type": "view", "timestamp": 1.5, "extra": [1]}\n'
        "\n"
        '{"user_id": "v", "item_id": "j", "type": "cart"}\n',
    )
    assert list(read_events(path, "jsonl")) == [first, second]


# --- malformed rows -----------------------------------------------------------------------

DIGINETICA_HEADER = "session_id;user_id;item_id;timeframe;eventdate\n"
REES46_HEADER = (
    "event_time,event_type,product_id,category_id,category_code,brand,price,user_id,user_session\n"
)
REES46_ROW = "2019-10-01 00:00:00 UTC,view,1,2,,,1.0,3,s\n"

HEADERLESS = ("movielens", "taobao", "jsonl")
MALFORMED = [
    # fmt, file name, content, line of the bad row, words of the reason
    ("diginetica", "v.csv", "session;user\n", 1, "expected the header"),
    ("diginetica", "v.csv", DIGINETICA_HEADER + "1;NA;5;10;2016-05-09\n1;NA;6;abc;2016-05-09\n", 3,
     "timeframe 'abc' is not an integer"),
    ("diginetica", "v.csv", DIGINETICA_HEADER + "1;NA;5;10;2016-05-09\n1;NA;6;20;09.05.2016\n", 3,
     "eventdate"),
    ("diginetica", "v.csv", DIGINETICA_HEADER + "1;NA;5;10\n", 2, "expected 5 fields, got 4"),
    ("movielens", "u.data", "1\t2\t3\t881250949\n1\t3\t9\t881250949\n", 2, "rating 9"),
    ("movielens", "u.data", "1\t2\t3\t881250949\n\n1\t3\t4\n", 3, "expected 4 fields"),
    ("taobao", "UserBehavior.csv", "1,2,3,pv,1511544070\n1,2,3,click,1511544071\n", 2,
     "behavior 'click'"),
    ("taobao", "UserBehavior.csv", "1,2,3,pv,1511544070\n1,2,3,pv,\n", 2, "timestamp ''"),
    ("rees46", "e.csv", REES46_HEADER + REES46_ROW + REES46_ROW.replace(" UTC", ""), 3,
     "event_time"),
    ("rees46", "e.csv", REES46_HEADER + REES46_ROW + REES46_ROW.replace("view", "wish"), 3,
     "event_type 'wish'"),
    ("rees46", "e.csv", REES46_HEADER + REES46_ROW.replace("1.0", "cheap"), 2, "price 'cheap'"),
    ("rees46", "e.csv", REES46_HEADER.replace(",brand", ""), 1, "lacks column(s) brand"),
    ("session-tsv", "t.tsv", "SessionId\tItemId\tTime\n1\t2\t3\n1\t2\tsoon\n", 3, "Time 'soon'"),
    ("session-tsv", "t.tsv", "SessionId\tItemId\n1\t2\n", 1, "lacks column(s) Time"),
    ("csv", "e.csv", "user_id,item_id,type,timestamp\nu,i,view,1\nu,,view,2\n", 3,
     "item_id is empty"),
    ("csv", "e.csv", "user_id,item_id,type,timestamp\nu,i,view,1\nu,i,view,yesterday\n", 3,
     "timestamp 'yesterday'"),
    ("csv", "e.csv", "user_id,item_id,type,timestamp\nu,i,view,1,extra\n", 2,
     "expected 4 fields, got 5"),
    ("jsonl", "e.jsonl", '{"user_id": "u"}\n{"user_id": \n', 2, "invalid JSON"),
    ("jsonl", "e.jsonl", '{"user_id": "u"}\n\n[1, 2]\n', 3, "expected a JSON object"),
]  # fmt: skip


@pytest.mark.parametrize(("fmt", "name", "content", "line", "reason"), MALFORMED)
def test_malformed_row_raises_naming_file_and_line(
    tmp_path: Path, fmt: str, name: str, content: str, line: int, reason: str
) -> None:
    path = write(tmp_path / name, content)
    good: list[dict[str, Any]] = []
    with pytest.raises(DatasetFormatError) as caught:
        good.extend(read_events(path, fmt))
    error = caught.value
    assert isinstance(error, ValueError)
    assert (error.path, error.line_number) == (path, line)
    assert str(error).startswith(f"{path}:{line}: ")
    assert reason in error.reason
    # The rows before the bad one were streamed out first.
    before = [row for row in content.splitlines()[: line - 1] if row]
    headers = 1 if before and fmt not in HEADERLESS else 0
    assert len(good) == len(before) - headers


def test_malformed_movielens_item_names_its_line(tmp_path: Path) -> None:
    good = "1|Toy Story (1995)|01-Jan-1995||url" + "|0" * 18 + "|1\n"
    bad = "2|GoldenEye (1995)|01-Jan-1995||url" + "|0" * 18 + "|yes\n"
    write(tmp_path / "u.item", good + bad, encoding="latin-1")
    data = write(tmp_path / "u.data", "")
    with pytest.raises(DatasetFormatError, match=r"u\.item:2: genre flags must be 0 or 1"):
        list(read_items(data, "movielens"))
