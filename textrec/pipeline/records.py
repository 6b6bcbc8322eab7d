"""Reading and validating JSON Lines corpora.

One document per line, a JSON object with:

- ``id``: a non-empty string of at most 512 characters, unique in the store, in Unicode NFC
  (composed) form, without control or bidirectional control characters, and with at least one
  visible character (ids that would display as another id are refused, not normalised: the
  error names the NFC form to use);
- ``text``: a non-empty string (at most ``max_chars`` characters, 1,000,000 by default);
- ``title``: a string, ``null`` or absent;
- anything else: kept as the document's metadata, nested at most 64 levels deep.

No string may hold a NUL character or a lone surrogate (``\\ud800``): PostgreSQL cannot store
the one and UTF-8 cannot encode the other. A key repeated in an object is refused rather than
silently resolved. A UTF-8 byte-order mark at the start of a file is skipped.

Files may be gzip-compressed (``.gz``) and ``-`` reads standard input. A bad line never stops
the rest: :func:`read_records` yields either a :class:`Record` or a :class:`RecordError` that
names the file, the line and what is wrong.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import sys
import unicodedata
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any, cast

__all__ = [
    "DEFAULT_MAX_CHARS",
    "MAX_META_DEPTH",
    "DuplicateKeyError",
    "Record",
    "RecordError",
    "no_duplicate_keys",
    "parse_record",
    "read_records",
    "too_deep_field",
]

DEFAULT_MAX_CHARS = 1_000_000


@dataclass(frozen=True)
class Record:
    """A valid input document and where it came from."""

    source: str
    line: int
    id: str
    text: str
    title: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RecordError:
    """A rejected input line."""

    source: str
    line: int
    reason: str
    id: str | None = None

    def __str__(self) -> str:
        where = f"{self.source}:{self.line}"
        return f"{where}: {self.reason}" + (f" (id {self.id!r})" if self.id is not None else "")


def _describe(value: Any) -> str:
    return "null" if value is None else type(value).__name__


class DuplicateKeyError(ValueError):
    """A JSON object repeats a key (which a parser would resolve silently)."""


def no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook`` for :func:`json.loads` that refuses a repeated key."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        key = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        raise DuplicateKeyError(f"field {key!r} appears more than once")
    return obj


def _unencodable(obj: dict[str, Any]) -> str | None:
    """Where ``obj`` holds a lone surrogate (from a ``\\udXXX`` escape), else None."""
    for key, value in obj.items():
        for name, s in ((f"name of field {key!r}", key), (f"field {key!r}", value)):
            if isinstance(s, str):
                try:
                    s.encode("utf-8")
                except UnicodeEncodeError as exc:
                    code = ord(s[exc.start])
                    return f"{name} holds a lone surrogate \\u{code:04x} at {exc.start}"
    try:  # nested metadata
        json.dumps(obj, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return "a metadata field holds a lone surrogate (an unpaired \\ud800-\\udfff escape)"
    return None


MAX_META_DEPTH = 64
"""How deep arrays and objects may nest in a metadata field: far more than any real
metadata, and far less than what a JSON encoder or the HTTP layer can return (a document
nested 256 levels deep was stored, then could never be read back)."""


def too_deep_field(meta: dict[str, Any]) -> str | None:
    """The first metadata field nested more than :data:`MAX_META_DEPTH` levels, else None."""
    for key, value in meta.items():
        level = [value]
        for _ in range(MAX_META_DEPTH):
            level = [
                child
                for v in level
                if isinstance(v, dict | list)
                for child in (v.values() if isinstance(v, dict) else v)
            ]
            if not level:
                break
        else:
            if any(isinstance(v, dict | list) for v in level):
                return key
    return None


def _looks_utf16(raw: bytes) -> bool:
    """A UTF-16 byte-order mark, or NUL in every other byte (ASCII in UTF-16)."""
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        return True
    if len(raw) < 8 or b"\x00" not in raw:
        return False
    half = len(raw) // 2
    return raw[0::2].count(0) >= half * 0.4 or raw[1::2].count(0) >= half * 0.4


# Characters that reorder how text displays (the Unicode bidirectional controls): an id
# holding one can show as another id ("Trojan source").
_BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)


def _control_character(value: str) -> int | None:
    for i, ch in enumerate(value):
        if ord(ch) < 0x20 or 0x7F <= ord(ch) < 0xA0:
            return i
    return None


def parse_record(
    raw: bytes | str, *, source: str = "<input>", line: int = 1, max_chars: int = DEFAULT_MAX_CHARS
) -> Record | RecordError:
    """Validate one JSON line. Returns a :class:`Record` or a :class:`RecordError`."""

    def error(reason: str, doc_id: str | None = None) -> RecordError:
        return RecordError(source, line, reason, doc_id)

    # Decoded bytes hold no lone surrogate; a given str may (json.dumps(..., ensure_ascii=False)
    # of a Python string keeps one as it is).
    escapes_only = isinstance(raw, bytes)
    if isinstance(raw, bytes) and _looks_utf16(raw):
        return error(
            "the line looks like UTF-16 text (NUL bytes between its characters): textrec "
            "reads UTF-8; convert the file, for example with iconv -f UTF-16 -t UTF-8"
        )
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            return error(f"invalid UTF-8 at byte {exc.start}")
    if "\x00" in raw:
        return error("NUL character in the line")
    try:
        obj = json.loads(raw, object_pairs_hook=no_duplicate_keys)
    except json.JSONDecodeError as exc:
        if "\r" in raw.strip():
            return error(
                f"invalid JSON: {exc.msg} at column {exc.colno}; the line holds carriage "
                "returns (CR): if the file's lines end with CR alone, convert them to LF"
            )
        return error(f"invalid JSON: {exc.msg} at column {exc.colno}")
    except RecursionError:
        return error("invalid JSON: nested too deeply")
    except DuplicateKeyError as exc:
        return error(f"invalid record: {exc}")
    except ValueError as exc:  # an integer of more than 4,300 digits
        return error(f"invalid JSON: {str(exc).partition('; use')[0]}")
    if not isinstance(obj, dict):
        return error(f"expected a JSON object, got {_describe(obj)}")
    if "\\u" in raw or not escapes_only:  # else no NUL or lone surrogate can be in obj
        where = _unencodable(obj)
        if where is not None:
            named = obj.get("id")
            if not isinstance(named, str) or _unencodable({"id": named}) is not None:
                named = None
            return error(f"invalid Unicode: {where}", named)
        for name in ("id", "title", "text"):
            value = obj.get(name)
            if isinstance(value, str) and "\x00" in value:
                doc_id = obj.get("id") if name != "id" else None
                return error(
                    f"field {name!r} holds a NUL character (\\u0000)",
                    doc_id if isinstance(doc_id, str) else None,
                )
    doc_id = obj.get("id")
    if "id" not in obj:
        return error("missing field 'id'")
    if not isinstance(doc_id, str):
        shown = repr(doc_id)
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        return error(f"field 'id' must be a string, got {_describe(doc_id)} {shown}")
    if not doc_id.strip():
        return error("field 'id' is empty")
    if len(doc_id) > 512:
        return error(f"field 'id' is {len(doc_id)} characters long; the limit is 512")
    control = _control_character(doc_id)
    if control is not None:
        return error(
            f"field 'id' holds a control character U+{ord(doc_id[control]):04X} at {control}",
        )
    bidi = next((i for i, ch in enumerate(doc_id) if ch in _BIDI_CONTROLS), None)
    if bidi is not None:
        return error(
            f"field 'id' holds a bidirectional control character U+{ord(doc_id[bidi]):04X} "
            f"at {bidi}, which makes an id display as another"
        )
    if not any(unicodedata.category(ch) != "Cf" and not ch.isspace() for ch in doc_id):
        return error("field 'id' has no visible character (only zero-width or format ones)")
    if not unicodedata.is_normalized("NFC", doc_id):
        return error(
            "field 'id' is not in Unicode NFC (composed) form, so it would look like another "
            f"id yet differ: store it as {unicodedata.normalize('NFC', doc_id)!r}"
        )
    if "text" not in obj:
        return error("missing field 'text'", doc_id)
    text = obj["text"]
    if not isinstance(text, str):
        return error(f"field 'text' must be a string, got {_describe(text)}", doc_id)
    if not text.strip():
        return error("field 'text' is empty", doc_id)
    if len(text) > max_chars:
        return error(
            f"field 'text' is {len(text):,} characters long; the limit is {max_chars:,} "
            f"(raise it with --max-chars)",
            doc_id,
        )
    title = obj.get("title")
    if title is not None and not isinstance(title, str):
        return error(f"field 'title' must be a string or null, got {_describe(title)}", doc_id)
    meta = {k: v for k, v in obj.items() if k not in ("id", "title", "text")}
    deep = too_deep_field(meta)
    if deep is not None:
        return error(
            f"field {deep!r} is nested more than {MAX_META_DEPTH} levels deep "
            "(arrays and objects within each other)",
            doc_id,
        )
    return Record(source, line, doc_id, text, title or None, meta)


def open_input(path: str, stack: contextlib.ExitStack) -> IO[bytes]:
    """A file (or ``-``, standard input) for reading bytes, decompressed when gzip."""
    if path == "-":
        return sys.stdin.buffer
    f: IO[bytes] = stack.enter_context(open(path, "rb"))  # noqa: SIM115
    head = f.peek(2)[:2] if isinstance(f, io.BufferedReader) else b""
    if head == b"\x1f\x8b":
        gz = cast(IO[bytes], gzip.GzipFile(fileobj=f, mode="rb"))
        return stack.enter_context(gz)
    return f


def read_records(
    path: str, *, max_chars: int = DEFAULT_MAX_CHARS
) -> Iterator[Record | RecordError]:
    """Every line of a JSONL file (``.gz`` and ``-`` too), valid or not, in order.

    Blank lines are skipped silently. A file that cannot be opened or read raises ``OSError``.
    """
    source = "<stdin>" if path == "-" else path
    number = 0
    with contextlib.ExitStack() as stack:
        f = open_input(path, stack)
        try:
            for number, raw in enumerate(f, start=1):
                if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
                    raw = raw[3:]  # a UTF-8 byte-order mark, as some editors write
                stripped = raw.strip()
                if not stripped:
                    continue
                yield parse_record(stripped, source=source, line=number, max_chars=max_chars)
        except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
            where = f"{source}: cannot read after line {number}" if number else source
            raise OSError(
                f"{where}: cannot read: {exc}" if not number else f"{where}: {exc}"
            ) from exc
