"""How the service reads and writes JSON: delivery bodies, stored values, job arguments.

Reading uses simdjson, which checks a whole document without building Python objects;
the json module reads the few documents simdjson refuses (NaN, integers beyond 64 bits,
lone surrogates), so what is accepted is what ``json.loads`` accepts. Not orjson for
reading: it turns an integer beyond 64 bits into a float without a word.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

import orjson
import simdjson


def json_value(text: bytes | str) -> Any:
    """A JSON document's value, as ``json.loads`` reads it, in about half its time."""
    try:
        return simdjson.Parser().parse(text, True)
    except (ValueError, RuntimeError):
        return json.loads(text)


def json_text(value: Any) -> str:
    """JSON for a PostgreSQL jsonb value or parameter.

    PostgreSQL text and jsonb cannot hold NUL, which a payload's strings can (an action, a
    repository name): such a string is stored with U+FFFD in its place, where otherwise
    the whole statement (a batch of deliveries, a replay's jobs) would be refused.
    """
    text = orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)
    if b"\\u0000" in text:
        text = orjson.dumps(_without_nul(value), option=orjson.OPT_NON_STR_KEYS)
    return text.decode()


def _without_nul(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {_without_nul(k): _without_nul(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_without_nul(v) for v in value]
    return value


def parse_document(document: bytes) -> Any:
    """A delivery body's value, objects read lazily (``JSONObject``). Raises ValueError
    (UnicodeDecodeError included) or RecursionError when it is not JSON."""
    try:
        return JSONObject.parse(document)
    except (ValueError, RuntimeError):
        # simdjson refuses a few documents the json module reads: what is accepted stays
        # the same.
        return json.loads(document)


class JSONObject(Mapping[str, Any]):
    """A JSON object that builds Python values only for what is read.

    simdjson checks the whole document but makes no objects; the handlers read a handful
    of fields, so a delivery does not cost the thousands of dicts and strings a full
    parse builds and frees. Objects read are wrapped in turn; arrays are read whole, as
    lists. One difference from ``json.loads``: of a key repeated in one object (GitHub
    never sends one, and the body is signed), the first is read, not the last.
    """

    __slots__ = ("_object",)

    def __init__(self, value: Any) -> None:
        self._object = value  # a simdjson.Object; it keeps its parser (the document) alive

    @classmethod
    def parse(cls, document: bytes) -> Any:
        """The document's value: a JSONObject for an object. Raises ValueError (also
        UnicodeDecodeError) or RuntimeError for what simdjson cannot read."""
        return _wrap(simdjson.Parser().parse(document))

    def __getitem__(self, key: str) -> Any:
        if not isinstance(key, str):
            raise KeyError(key)
        return _wrap(self._object[key])

    def get(self, key: str, default: Any = None) -> Any:
        # Mapping.get goes through __getitem__ and a KeyError: several times slower.
        if not isinstance(key, str):
            return default
        value = self._object.get(key, _MISSING)
        return default if value is _MISSING else _wrap(value)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key in self._object

    def __iter__(self) -> Iterator[str]:
        return iter(self._object.keys())

    def __len__(self) -> int:
        return len(self._object)

    def __repr__(self) -> str:
        return f"JSONObject({dict(self)!r})"


_MISSING = object()

# What a JSON object reads as (an isinstance check against Mapping costs several times more).
JSON_OBJECTS = (JSONObject, dict)


def _wrap(value: Any) -> Any:
    if isinstance(value, simdjson.Object):
        return JSONObject(value)
    if isinstance(value, simdjson.Array):
        return value.as_list()
    return value
