"""Where the tools find the evaluation datasets (docs/datasets.md says how to get them).

``$RECO_DATASETS`` names the directory that holds them, one folder per dataset
(``diginetica-sample/``, ``movielens-100k/``, ...). When it is not set, the team's copy at
``../shared/data`` beside the checkout is used if it exists.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

ENV = "RECO_DATASETS"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
HELP = (
    f"directory holding the datasets, one folder each (docs/datasets.md); default ${ENV}, "
    f"else {SHARED} if it exists"
)


def default_dir() -> Path | None:
    configured = os.environ.get(ENV)
    if configured:
        return Path(configured)
    return SHARED if SHARED.is_dir() else None


def require_dir(parser: argparse.ArgumentParser, given: Path | None) -> Path:
    """``given`` (the flag's value, defaulted by :func:`default_dir`), or a usage error."""
    if given is None:
        parser.error(
            f"no datasets directory: set {ENV} or pass the flag "
            "(docs/datasets.md says where to download each dataset)"
        )
    if not given.is_dir():
        parser.error(f"datasets directory {given} does not exist")
    return given
