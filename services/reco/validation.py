"""Validation messages a person can act on: which field, why, and nothing of the validator.

Pydantic's own text names the branches of a union (``timestamp.constrained-float``),
prefixes a validator's message with ``Value error,``, names model classes (``instance of
ItemIn``) and, in its error objects, carries the whole input. Clients get none of that: every
message the engine answers with comes through :func:`field_errors`, and every value a message
quotes comes through :func:`echo`, which cuts it to a short prefix.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

ECHO_CHARS = 40
"""Longest quote of a client's value: enough to recognise it, never a 10 MB echo."""

# Pydantic's messages that name its own types or say less than they could.
_MESSAGES = {
    "extra_forbidden": "unknown field",
    "model_type": "must be a JSON object",
    "model_attributes_type": "must be a JSON object",
    "dict_type": "must be a JSON object",
    "list_type": "must be a JSON array",
    "string_type": "must be a string",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
}
_PREFIXES = ("Value error, ", "Assertion failed, ")


def echo(value: object) -> str:
    """``value`` as a message quotes it: its repr, or a prefix of it and how long it was."""
    if isinstance(value, float):
        return f"{value:.15g}"  # 1e+308, not 309 digits
    if isinstance(value, str) and len(value) > ECHO_CHARS:
        return f"{value[:ECHO_CHARS]!r}… ({len(value)} characters)"
    text = repr(value)
    if len(text) > ECHO_CHARS:
        return f"{text[:ECHO_CHARS]}… ({len(text)} characters)"
    return text


@dataclass(frozen=True, slots=True)
class FieldError:
    """One problem: ``field`` is a dotted path (``[1].price``, ``exclude[3]``), ``location``
    where the field was (``body``, ``query``, ``path``, ``header``) when it is known."""

    field: str
    message: str
    location: str | None = None

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


def field_errors(
    errors: Iterable[ErrorDetails | dict[str, Any]], *, located: bool = False
) -> list[FieldError]:
    """Readable errors from pydantic's; ``located``: the first part of each ``loc`` says
    where the value was (FastAPI's request errors), not a field."""
    out = []
    for err in errors:
        loc: Sequence[str | int] = tuple(err.get("loc", ()))
        location = str(loc[0]) if located and loc else None
        path = loc[1:] if located else loc
        field = field_path(path, default=location or "value")
        out.append(FieldError(field, _message(err), location))
    return out


def field_path(loc: Sequence[str | int], *, default: str = "value") -> str:
    """``("exclude", 3)`` -> ``exclude[3]``; ``(1, "price")`` -> ``[1].price``."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or default


def _message(err: ErrorDetails | dict[str, Any]) -> str:
    kind = str(err.get("type", ""))
    if kind in _MESSAGES:
        return _MESSAGES[kind]
    msg = str(err.get("msg", "is not valid"))
    for prefix in _PREFIXES:
        msg = msg.removeprefix(prefix)
    return msg


def format_validation_error(exc: ValidationError) -> str:
    """One line naming each field and what is wrong with it: ``item_id: must not be empty``."""
    return "; ".join(str(e) for e in field_errors(exc.errors(include_url=False)))
