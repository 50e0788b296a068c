"""Read a JSON request body under a size limit, with errors that say what is wrong."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import HTTPException, Request, status


async def read_json(request: Request, max_bytes: int) -> Any:
    """The parsed body; 413 past ``max_bytes``, 400 for bytes that are not UTF-8 JSON."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise _too_large(int(declared), max_bytes)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise _too_large(size, max_bytes)
        chunks.append(chunk)
    body = b"".join(chunks)
    if not body:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "the request body is empty; send JSON")
    try:
        # ASCII is UTF-8: the usual body is cleared in C without decoding a copy of it.
        if not body.isascii():
            body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST,
            f"the request body is not valid UTF-8 (byte {exc.start}: {exc.reason})",
        ) from None
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST,
            f"the request body is not valid JSON: {exc.msg} at line {exc.lineno} "
            f"column {exc.colno}",
        ) from None


def _too_large(size: int, limit: int) -> HTTPException:
    return HTTPException(
        status.HTTP_413_CONTENT_TOO_LARGE,
        f"the request body has {size} bytes or more; the limit is {limit} bytes "
        "(RECO_MAX_BODY_BYTES): send smaller batches",
    )
