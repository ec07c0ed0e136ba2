"""How the service reads and writes JSON: delivery bodies, stored values, job arguments.

Reading uses simdjson, which checks a whole document without building Python objects;
the json module reads the few documents simdjson refuses (NaN, integers beyond 64 bits,
lone surrogates), so what is accepted is what ``json.loads`` accepts. Not orjson for
reading: it turns an integer beyond 64 bits into a float without a word.

One rule for a key repeated in one object, wherever a delivery is read (on arrival, by
the worker, on replay): the first is read. GitHub never repeats one, and the body is
signed, but a body must not mean one thing to the web process and another to a job.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, Mapping
from typing import Any, cast

import orjson
import simdjson


def json_value(text: bytes | str) -> Any:
    """A JSON document's value as plain Python values, for values PostgreSQL gives back
    (jsonb never holds a repeated key); delivery bodies are read with ``parse_document``."""
    try:
        return simdjson.Parser().parse(text, True)
    except (ValueError, RuntimeError):
        return json.loads(text)


def json_text(value: Any) -> str:
    """JSON for a PostgreSQL jsonb value or parameter; never refuses a value a delivery's
    JSON can hold.

    Values orjson or PostgreSQL cannot take are stored as near as they can be, where
    otherwise the whole statement (a batch of deliveries, a replay's jobs) would be
    refused: NUL (which PostgreSQL text and jsonb cannot hold) and lone surrogates become
    U+FFFD, an integer beyond 64 bits is written as its digits (jsonb keeps it exactly),
    and an object read lazily (``JSONObject``) is written whole.
    """
    try:
        text = orjson.dumps(value, default=_plain, option=orjson.OPT_NON_STR_KEYS)
    except TypeError:  # orjson.JSONEncodeError: a lone surrogate, a 65-bit integer, …
        text = _storable_text(value)
    if b"\\u0000" in text:
        text = _storable_text(value)
    return text.decode()


def json_size(value: Any) -> int:
    """How long ``json_text(value)`` is, near enough, without reading an object read
    lazily into Python values to find out."""
    if isinstance(value, JSONObject):
        return len(value._object.mini)
    return len(json_text(value))


def _storable_text(value: Any) -> bytes:
    return orjson.dumps(_storable(value), default=_plain, option=orjson.OPT_NON_STR_KEYS)


def _plain(value: Any) -> Any:
    if isinstance(value, JSONObject):  # read whole at once (linear, unlike dict(value))
        return _read_whole(cast(bytes, value._object.mini))
    raise TypeError(f"{type(value).__name__} is not a JSON value")


# NUL, and UTF-16 surrogates (a str holds one only when it came from a lone "\ud800").
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_MAX_DEPTH = 200  # below orjson's own limit of nesting


def _storable(value: Any, depth: int = 0) -> Any:
    if isinstance(value, str):
        return _UNSTORABLE.sub("\ufffd", value)
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return value if -(2**63) <= value < 2**64 else orjson.Fragment(str(value))
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if depth >= _MAX_DEPTH:
        return None
    if isinstance(value, JSONObject):
        value = _read_whole(cast(bytes, value._object.mini))
    if isinstance(value, Mapping):
        return {_storable(str(k)): _storable(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_storable(v, depth + 1) for v in value]
    return value  # a type of our own code's (a datetime): orjson writes it


def parse_document(document: bytes) -> Any:
    """A delivery body's value, objects read lazily (``JSONObject``). Raises ValueError
    (UnicodeDecodeError included) or RecursionError when it is not JSON."""
    try:
        return JSONObject.parse(document)
    except (ValueError, RuntimeError):
        # simdjson refuses a few documents the json module reads: what is accepted stays
        # the same, and so does which of a repeated key is read.
        return _read_whole(document)


def _first_of_each_key(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        obj.setdefault(key, value)
    return obj


_DECODER = json.JSONDecoder(object_pairs_hook=_first_of_each_key)


class JSONObject(Mapping[str, Any]):
    """A JSON object that builds Python values only for what is read.

    simdjson checks the whole document but makes no objects; the handlers read a handful
    of fields, so a delivery does not cost the thousands of dicts and strings a full
    parse builds and frees. Objects read are wrapped in turn; arrays are read whole, as
    lists. Of a key repeated in one object, the first is read (as everywhere a delivery
    is read: see the module's docstring).
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
        seen: set[str] = set()
        for key in self._object.keys():
            if key not in seen:  # a repeated key once, as dict(...) and == see it
                seen.add(key)
                yield key

    def __len__(self) -> int:
        return len(set(self._object.keys()))

    def __bool__(self) -> bool:  # without reading the keys (``data.get("sender") or {}``)
        return len(self._object) > 0

    def __repr__(self) -> str:
        return f"JSONObject({dict(self)!r})"


_MISSING = object()

# What a JSON object reads as (an isinstance check against Mapping costs several times more).
JSON_OBJECTS = (JSONObject, dict)


def _wrap(value: Any) -> Any:
    if isinstance(value, simdjson.Object):
        return JSONObject(value)
    if isinstance(value, simdjson.Array):
        if any(isinstance(v, simdjson.Object | simdjson.Array) for v in value):
            # as_list() would keep the last of a key repeated in an object in it.
            return _read_whole(cast(bytes, value.mini))  # bytes, whatever the stubs say
        return value.as_list()
    return value


def _read_whole(document: bytes) -> Any:
    """``json.loads(document)``, keeping the first of a repeated key."""
    return _DECODER.decode(document.decode(json.detect_encoding(document), "surrogatepass"))


_CONTAINERS = (simdjson.Object, simdjson.Array, dict, list)
_OBJECTS = (simdjson.Object, dict)


def scalar_at(data: Mapping[str, Any], *path: str) -> Any:
    """The string, number, true, false or null at ``path`` (``"sender", "login"``), else
    None. What is on the way is not read: an array there (a delivery's can hold millions
    of values) is not built to find it is not an object."""
    value: Any = data
    for key in path:
        if type(value) is JSONObject:
            value = value._object
        elif not isinstance(value, _OBJECTS):
            return None
        value = value.get(key)
    return None if isinstance(value, _CONTAINERS) else value
