"""Bounds of the two APIs and the checks that enforce them (standard library only), one definition
for the services' schemas, the loader and the corpus readers. Every check returns a short reason
naming the limit, or None; callers make it their own error (a 422, a skipped document).
"""

from __future__ import annotations

import math
import unicodedata

# -- request bodies (defaults of INGEST_MAX_BODY_BYTES / QUERY_MAX_BODY_BYTES) -------------------
# Checked on Content-Length (and on the bytes actually received) before the body is read.
INGEST_MAX_BODY_BYTES = 32 * 1024 * 1024
QUERY_MAX_BODY_BYTES = 64 * 1024
# Characters of text and titles in one ingestion request (INGEST_MAX_REQUEST_CHARS): the work one
# request causes, refused (413) before it starts. The loader splits its batches to fit.
INGEST_MAX_REQUEST_CHARS = 500_000

# -- documents -------------------------------------------------------------------------------------
MAX_ID_CHARS = 512
MAX_TEXT_CHARS = 100_000
MAX_TITLE_CHARS = 1_000
MAX_METADATA_KEYS = 64
MAX_METADATA_KEY_CHARS = 128
MAX_METADATA_VALUE_CHARS = 4_096
# Keys and string values of one document's metadata together.
MAX_METADATA_TOTAL_CHARS = 16_384
# The schema's hard ceiling, whatever INGEST_MAX_DOCUMENTS_PER_REQUEST says: a huge body fails early.
MAX_DOCUMENTS_CEILING = 10_000
# Chroma stores integers as int64; a larger one would come back as a float (or be refused).
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

# -- search ----------------------------------------------------------------------------------------
MAX_QUERY_CHARS = 2_000
MAX_K = 100
MAX_WHERE_DEPTH = 4  # nesting of $and / $or
MAX_WHERE_CONDITIONS = 32  # field conditions in one filter
MAX_WHERE_LIST = 100  # values of one $in / $nin

# -- ids -------------------------------------------------------------------------------------------
# An id is one URL path segment (/documents/{id}) that survives URL normalisation: printable
# Unicode but the characters below ("#" also separates passage ids), not "." and never "..".
ID_FORBIDDEN_CHARS = "/\\#?%"
ID_CHARSET = (
    "printable Unicode letters, digits, punctuation and symbols, except / \\ # ? % "
    "(no whitespace or control characters, no '..')"
)
_PRINTABLE_CATEGORIES = frozenset("LMNPS")

# Keys the store owns ("_title"), Chroma reserves ("chroma:…") or reads as operators ("$and", "#document").
RESERVED_METADATA_PREFIXES = ("_", "chroma:", "$", "#")


def surrogate_problem(text: str) -> str | None:
    """Lone surrogates ("\\ud800") parse from JSON but cannot be encoded as UTF-8 or stored."""
    for ch in text:
        if "\ud800" <= ch <= "\udfff":
            return "must be valid Unicode (it holds a lone surrogate, e.g. an unpaired \\ud800 escape)"
    return None


def id_problem(doc_id: str) -> str | None:
    if not doc_id:
        return "must have at least 1 character"
    if len(doc_id) > MAX_ID_CHARS:
        return f"must have at most {MAX_ID_CHARS} characters"
    if (problem := surrogate_problem(doc_id)) is not None:
        return problem
    if doc_id == "." or ".." in doc_id:
        return "must not be '.' or contain '..'"
    for ch in doc_id:
        if ch in ID_FORBIDDEN_CHARS or unicodedata.category(ch)[0] not in _PRINTABLE_CATEGORIES:
            return f"may only use {ID_CHARSET}; found {ch!r}"
    return None


def metadata_key_problem(key: object) -> str | None:
    if not isinstance(key, str) or not key or len(key) > MAX_METADATA_KEY_CHARS:
        return f"metadata keys must have 1 to {MAX_METADATA_KEY_CHARS} characters"
    if (problem := surrogate_problem(key)) is not None:
        return f"metadata key {problem}"
    if key.startswith(RESERVED_METADATA_PREFIXES):
        reserved = ", ".join(repr(p) for p in RESERVED_METADATA_PREFIXES)
        return f"metadata key {_short(key)} is reserved: keys may not start with {reserved}"
    if any(unicodedata.category(ch)[0] == "C" for ch in key):
        return f"metadata key {_short(key)} holds a control character"
    return None


def scalar_problem(value: object) -> str | None:
    """A metadata value or filter operand: a string, a finite number within int64, or a boolean."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        if not INT64_MIN <= value <= INT64_MAX:
            return "integers must be within int64 (-2**63 to 2**63 - 1)"
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else "numbers must be finite (no NaN or Infinity)"
    if isinstance(value, str):
        if len(value) > MAX_METADATA_VALUE_CHARS:
            return f"strings must have at most {MAX_METADATA_VALUE_CHARS} characters"
        return surrogate_problem(value)
    kinds = {dict: "an object", list: "an array", type(None): "null"}
    return f"must be a string, number or boolean, not {kinds.get(type(value), type(value).__name__)}"


def metadata_problem(metadata: dict[str, object]) -> str | None:
    """Flat key → scalar, within the key, value and total bounds."""
    if len(metadata) > MAX_METADATA_KEYS:
        return f"metadata may have at most {MAX_METADATA_KEYS} keys"
    total = 0
    for key, value in metadata.items():
        if (problem := metadata_key_problem(key)) is not None:
            return problem
        if (problem := scalar_problem(value)) is not None:
            return f"metadata value of {_short(key)}: {problem}"
        total += len(key) + (len(value) if isinstance(value, str) else 0)
    if total > MAX_METADATA_TOTAL_CHARS:
        return (
            f"metadata keys and string values may have at most {MAX_METADATA_TOTAL_CHARS} characters in all"
        )
    return None


_COMPARISONS = {"$eq", "$ne"}
_ORDERINGS = {"$gt", "$gte", "$lt", "$lte"}
_MEMBERSHIP = {"$in", "$nin"}
_LOGICAL = {"$and", "$or"}


def where_problem(where: object) -> str | None:
    """Chroma's metadata filter grammar, checked here so that a bad filter is the client's 422:

    filter    := {"$and": [filter, filter, ...]} | {"$or": [...]} | {field: scalar} | {field: {op: operand}}
    op        := $eq | $ne (scalar) | $gt | $gte | $lt | $lte (number) | $in | $nin (non-empty list
                 of scalars of one type)
    Each object has exactly one key; fields follow the metadata key rules; at most MAX_WHERE_DEPTH
    levels of $and/$or, MAX_WHERE_CONDITIONS conditions, MAX_WHERE_LIST values per list.
    """
    return _where(where, "where", 1, conditions=[0])


def _where(node: object, at: str, depth: int, conditions: list[int]) -> str | None:
    if not isinstance(node, dict) or len(node) != 1:
        return f"{at}: a filter is an object with exactly one key (a field, $and or $or)"
    ((key, value),) = node.items()
    if key in _LOGICAL:
        if depth > MAX_WHERE_DEPTH:
            return f"{at}: $and/$or may be nested at most {MAX_WHERE_DEPTH} deep"
        if not isinstance(value, list) or not 2 <= len(value) <= MAX_WHERE_CONDITIONS:
            return f"{at}.{key}: needs a list of 2 to {MAX_WHERE_CONDITIONS} filters"
        for i, item in enumerate(value):
            if (problem := _where(item, f"{at}.{key}[{i}]", depth + 1, conditions)) is not None:
                return problem
        return None
    if (problem := metadata_key_problem(key)) is not None:
        return f"{at}: {problem.replace('metadata key', 'field')}"
    conditions[0] += 1
    if conditions[0] > MAX_WHERE_CONDITIONS:
        return f"{at}: a filter may hold at most {MAX_WHERE_CONDITIONS} conditions"
    at = f"{at}.{key}" if key.replace("_", "a").replace("-", "a").isalnum() else f"{at}[{_short(key, 40)}]"
    if not isinstance(value, dict):
        problem = scalar_problem(value)
        return None if problem is None else f"{at}: {problem}"
    if len(value) != 1:
        return f"{at}: an operator object has exactly one operator"
    ((op, operand),) = value.items()
    if op in _COMPARISONS:
        problem = scalar_problem(operand)
    elif op in _ORDERINGS:
        numeric = isinstance(operand, int | float) and not isinstance(operand, bool)
        problem = scalar_problem(operand) if numeric else "needs a number"
    elif op in _MEMBERSHIP:
        if not isinstance(operand, list) or not 1 <= len(operand) <= MAX_WHERE_LIST:
            problem = f"needs a list of 1 to {MAX_WHERE_LIST} values"
        elif len({type(v) for v in operand}) != 1:
            problem = "needs values of one type"
        else:
            problem = next((p for p in map(scalar_problem, operand) if p is not None), None)
    else:
        ops = ", ".join(sorted(_COMPARISONS | _ORDERINGS | _MEMBERSHIP))
        return f"{at}: unknown operator {_short(str(op), 40)} (one of {ops})"
    return None if problem is None else f"{at}.{op}: {problem}"


def _short(text: str, limit: int = 60) -> str:
    """A bounded repr for messages (repr shows a lone surrogate as an escape, so it encodes)."""
    return repr(text if len(text) <= limit else text[:limit] + "…")
