"""``reco`` as a person runs it: each mistake ends in one line on stderr that says what is
wrong and what to do, exit code 2 for usage and 1 for a failure, and no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import free_port

pytestmark = pytest.mark.unit

DIGINETICA_HEADER = "session_id;user_id;item_id;timeframe;eventdate\n"


def reco(*args: str, cwd: Path, env: dict[str, str] | None = None) -> tuple[int, list[str]]:
    """Exit code and stderr lines of ``python -m reco.cli ARGS``, without the RECO_*
    variables of the environment the tests run in."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RECO_")}
    done = subprocess.run(
        [sys.executable, "-m", "reco.cli", *args],
        cwd=cwd,
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done.returncode, done.stderr.splitlines()


def assert_one_line(lines: list[str], command: str, *fragments: str) -> None:
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"reco {command}: "), lines
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.fixture
def files(tmp_path: Path) -> Path:
    (tmp_path / "a-dir").mkdir()
    (tmp_path / "a-file").write_text("")
    (tmp_path / "garbage.csv").write_text("not;a;diginetica;file\n")
    (tmp_path / "views.csv").write_text(DIGINETICA_HEADER + "1;NA;42;0;2016-05-09\n")
    return tmp_path


CASES: list[tuple[str, list[str], dict[str, str], int, list[str]]] = [
    (
        "replay of a missing file",
        ["replay", "absent.csv", "--format", "diginetica"],
        {},
        1,
        ["absent.csv: no such file or directory", "check the path"],
    ),
    (
        "replay of a directory",
        ["replay", "a-dir", "--format", "diginetica"],
        {},
        1,
        ["a-dir is a directory", "give the path of a file"],
    ),
    (
        "replay of a file in another format",
        ["replay", "garbage.csv", "--format", "diginetica", "--url", "http://127.0.0.1:9"],
        {},
        1,
        ["garbage.csv:1: expected the header", "check that the file is in the --format given"],
    ),
    (
        "eval of a missing file",
        ["eval", "--train", "absent.csv", "--format", "diginetica", "--split-days", "7"],
        {},
        1,
        ["absent.csv: no such file or directory"],
    ),
    (
        "eval of options that do not go together",
        ["eval", "--train", "views.csv", "--format", "diginetica"],
        {},
        2,
        ["exactly one of --test FILE and --split-days D"],
    ),
    (
        "a setting out of range",
        ["dev"],
        {"RECO_PORT": "99999"},
        2,
        ["RECO_PORT: Input should be less than or equal to 65535 (got '99999')", "(or --port)"],
    ),
    (
        "a nested setting",
        ["api"],
        {"RECO_WEIGHTS__COVIEW": "-1"},
        2,
        ["RECO_WEIGHTS__COVIEW: Input should be greater than or equal to 0", "fix the variable"],
    ),
    (
        "a map setting that is not JSON",
        ["ingest"],
        {"RECO_EVENT_WEIGHTS": "view=1"},
        2,
        ["RECO_EVENT_WEIGHTS is not valid JSON", "give it as JSON"],
    ),
    (
        "a secret setting is not echoed",
        ["train"],
        {"RECO_DATABASE_URL": "postgresql://u:hunter2@h/db", "RECO_DIM": "1"},
        2,
        ["RECO_DIM: Input should be greater than or equal to 2", "(or --dim)"],
    ),
    (
        "a data directory that is a file",
        ["dev", "--data-dir", "a-file"],
        {},
        1,
        ["a-file: a part of the path is a file, not a directory"],
    ),
    (
        "a ranker's option without --ranker",
        ["train", "--target", "purchase"],
        {},
        2,
        ["--target applies to --ranker only", "add --ranker or drop --target"],
    ),
    (
        "an experiment setting the engine refuses",
        ["api"],
        {"RECO_EXPERIMENTS": '[{"name": "x", "variants": [{"name": "a"}]}]'},
        2,
        ["RECO_EXPERIMENTS", "at least 2 items", "fix the variable"],
    ),
    (
        "rebuild without --yes",
        ["rebuild"],
        {},
        2,
        ["stop every processor first", "run again with --yes"],
    ),
]


@pytest.mark.parametrize(
    ("args", "env", "code", "fragments"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_a_mistake_is_one_line_that_says_what_to_do(
    files: Path, args: list[str], env: dict[str, str], code: int, fragments: list[str]
) -> None:
    returned, lines = reco(*args, cwd=files, env=env)
    assert returned == code, lines
    assert_one_line(lines, args[0], *fragments)
    assert "hunter2" not in lines[0]


def test_replay_to_an_engine_that_does_not_answer(files: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    returned, lines = reco("replay", "views.csv", "--format", "diginetica", "--url", url, cwd=files)
    assert returned == 1
    assert_one_line(lines, "replay", f"nothing answers at {url}", "start the engine", "--url")


def test_a_service_whose_backend_is_down_at_start_says_so_and_exits_1(files: Path) -> None:
    closed = free_port()
    env = {
        "RECO_PORT": str(free_port()),
        "RECO_REDIS_URL": f"redis://127.0.0.1:{closed}/0",
        "RECO_DATABASE_URL": f"postgresql://reco@127.0.0.1:{closed}/reco",
    }
    returned, lines = reco("api", cwd=files, env=env)
    assert returned == 1, lines
    assert not any("Traceback" in line for line in lines), lines
    # The service's own log lines come first (it is a server); the last line is the error.
    assert_one_line(lines[-1:], "api", f"127.0.0.1:{closed}", "start it", "RECO_DATABASE_URL")


def test_a_bad_flag_is_argparse_usage(files: Path) -> None:
    returned, lines = reco("dev", "--port", "http", cwd=files)
    assert returned == 2
    assert lines[-1] == "reco dev: error: argument --port: 'http' is not a port number (0 to 65535)"
