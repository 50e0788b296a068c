"""Reference apps for ``make bench``: the framework's ceiling, against which the engine's
``/recommendations`` is compared in the same run, under the same load.

``python -m benchmarks.trivial --port N [--redis-url URL]`` serves ``GET /recommendations``
with uvicorn the way ``reco api`` does (one process, uvicorn's default loop and HTTP
parser, no access log, the role's log level), from a FastAPI app answering with a
``response_model`` of the same shape as the engine's (20 items, each with a score, reasons,
title, category and price). With ``--redis-url`` each request makes one pipelined round trip
(``ZREVRANGE`` of 20 members with scores and one ``HGET``) with a redis-py client set up as
the engine's feature store sets up its own (hiredis, ``decode_responses``, RESP2), called
from the coroutine as the engine calls its store; without it the list is a constant. There
is no scoring, no rule, no middleware: what the engine adds is what its figure shows.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, cast

import redis
from fastapi import FastAPI, Query
from pydantic import BaseModel

ITEMS = 20
PREFIX = "bench-trivial:"
POPULAR_KEY = PREFIX + "popular"
META_KEY = PREFIX + "meta"
CATEGORIES = ("running", "hiking", "cycling", "swimming")


class Item(BaseModel):
    item_id: str
    score: float
    reasons: list[str]
    title: str | None = None
    category: str | None = None
    price: float | None = None


class Recommendations(BaseModel):
    user_id: str | None = None
    session_id: str | None = None
    item_id: str | None = None
    category: str | None = None
    items: list[Item]
    personalised: bool


def _item(n: int, item_id: str, score: float) -> Item:
    category = CATEGORIES[n % len(CATEGORIES)]
    return Item(
        item_id=item_id,
        score=score,
        reasons=["popular right now"],
        title=f"{category} item {n}",
        category=category,
        price=10.0 + n,
    )


def _members() -> dict[str, float]:
    return {f"trivial-item-{n:02d}": float(ITEMS - n) for n in range(ITEMS)}


def create_app(redis_url: str | None) -> FastAPI:
    if redis_url is None:
        fixed = [_item(n, item_id, score) for n, (item_id, score) in enumerate(_members().items())]

        app = FastAPI(title="trivial reference (no Redis)", docs_url=None, redoc_url=None)

        @app.get("/recommendations", response_model=Recommendations)
        async def constant(
            user_id: Annotated[str | None, Query(min_length=1)] = None,
            count: Annotated[int, Query(ge=1, le=200)] = 10,
        ) -> Recommendations:
            return Recommendations(user_id=user_id, items=fixed, personalised=False)

    else:
        client = redis.Redis.from_url(
            redis_url,
            decode_responses=True,
            protocol=2,
            socket_timeout=5.0,
            socket_connect_timeout=5.0,
            client_name="bench-trivial",
        )

        @asynccontextmanager
        async def lifespan(_: FastAPI) -> AsyncIterator[None]:
            client.zadd(POPULAR_KEY, cast(Any, _members()))
            client.hset(META_KEY, "version", "1")
            yield
            client.close()

        app = FastAPI(
            title="trivial reference (one Redis pipeline)",
            docs_url=None,
            redoc_url=None,
            lifespan=lifespan,
        )

        @app.get("/recommendations", response_model=Recommendations)
        async def pipelined(
            user_id: Annotated[str | None, Query(min_length=1)] = None,
            count: Annotated[int, Query(ge=1, le=200)] = 10,
        ) -> Recommendations:
            pipe = client.pipeline(transaction=False)
            pipe.zrevrange(POPULAR_KEY, 0, ITEMS - 1, withscores=True)
            pipe.hget(META_KEY, "version")
            top, version = pipe.execute()
            items = [_item(n, item_id, score) for n, (item_id, score) in enumerate(top)]
            return Recommendations(user_id=user_id, items=items, personalised=version is not None)

    @app.get("/health/ready")
    async def ready() -> dict[str, str]:
        return {"status": "ready"}

    return app


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--redis-url", help="one Redis pipeline per request; else a constant")
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args()
    logging.basicConfig(level=args.log_level.upper())
    uvicorn.run(
        create_app(args.redis_url),
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        log_config=None,
        access_log=False,
    )


if __name__ == "__main__":
    main()
