"""Error answers both services share, and their OpenAPI descriptions.

Every error body is small, encodable and says what the client can do:

* 422: FastAPI's shape (`detail`: list of `{type, loc, msg}`) without `input` or `ctx`, so a
  50 MB field is never echoed back and a NaN or a lone surrogate in the input cannot break the
  encoding; `msg` and `loc` are bounded.
* 503 (+ Retry-After): Chroma unreachable or failed, or the worker is at its backpressure limit.
  The body names no internal address and carries no upstream error text; those go to the log.
* A `where` filter or data that Chroma itself refuses is the client's 422, never a 503.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from services.common.backpressure import Overloaded
from twotower.index.documents import IndexMismatch
from twotower.index.migration import RolloutInProgress
from twotower.index.store import InvalidFilter, PartialWrite, StoreRejected, StoreUnavailable

log = logging.getLogger(__name__)

# Seconds a client should wait before retrying a 503 from the store.
RETRY_AFTER_S = 5
MAX_MSG_CHARS = 300
MAX_LOC_CHARS = 100
MAX_ISSUES = 20
STORE_DOWN = "the search index (Chroma) is unavailable; nothing was changed by this request, retry later"


class ErrorBody(BaseModel):
    detail: str = Field(description="What went wrong, for a person to read")
    stored: list[str] | None = Field(
        default=None,
        description="Only when Chroma failed part-way through a write: the ids of the documents that "
        "were stored (whole) before it failed; the others were not acknowledged",
    )


class ValidationIssue(BaseModel):
    type: str = Field(examples=["string_too_long"])
    loc: list[str | int] = Field(description="Where: body, field path", examples=[["body", "query"]])
    msg: str = Field(description="What is wrong, naming the limit", examples=["at most 2000 characters"])


class ValidationErrorBody(BaseModel):
    detail: list[ValidationIssue]


def bounded(text: str, limit: int = MAX_MSG_CHARS) -> str:
    """At most `limit` characters, and always encodable (a lone surrogate becomes an escape)."""
    if len(text) > limit:
        text = text[:limit] + "…"
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def unavailable(detail: str, retry_after: int = RETRY_AFTER_S, **content: Any) -> JSONResponse:
    return JSONResponse(
        status_code=503,
        content={"detail": bounded(detail), **content},
        headers={"Retry-After": str(retry_after)},
    )


def validation_error(issues: Sequence[dict[str, Any]]) -> JSONResponse:
    shown = []
    for issue in issues[:MAX_ISSUES]:
        msg = str(issue.get("msg", ""))
        if issue.get("type") == "json_invalid" and isinstance(issue.get("ctx"), dict):
            msg = f"{msg}: {issue['ctx'].get('error', '')}"
        loc = [p if isinstance(p, int) else bounded(str(p), MAX_LOC_CHARS) for p in issue.get("loc", ())]
        shown.append(
            {"type": bounded(str(issue.get("type", "invalid")), 64), "loc": loc, "msg": bounded(msg)}
        )
    return JSONResponse(status_code=422, content={"detail": shown})


async def _validation_failed(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    issues = exc.errors()
    content_type = request.headers.get("content-type", "")
    # FastAPI parses JSON only when the content type says so; otherwise the whole body is "not an
    # object", which hides the real mistake.
    whole_body = [i for i in issues if tuple(i.get("loc", ())) == ("body",) and i.get("type") != "missing"]
    if whole_body and "json" not in content_type.lower():
        detail = f"the body must be JSON sent as Content-Type: application/json, not {content_type!r}"
        return JSONResponse(status_code=415, content={"detail": bounded(detail)})
    return validation_error(issues)


async def _unavailable(request: Request, exc: Exception) -> JSONResponse:
    # A store failure's reason (address, upstream text) is for operators, not clients. A rollout
    # finishing, or a collection built by another model, says what to run and reveals nothing internal.
    log.warning("%s %s: 503, %s", request.method, request.url.path, exc)
    return unavailable(str(exc) if isinstance(exc, (RolloutInProgress, IndexMismatch)) else STORE_DOWN)


async def _overloaded(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Overloaded)
    return unavailable(str(exc), retry_after=exc.retry_after_s)


async def _partial_write(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, PartialWrite)
    log.warning(
        "%s %s: 503 after a partial write (%d stored), %s",
        request.method,
        request.url.path,
        len(exc.stored),
        exc,
    )
    detail = f"{STORE_DOWN.split(';')[0]} part-way through this request: the documents in `stored` were stored, the others were not"
    return unavailable(detail, stored=exc.stored)


async def _refused(request: Request, exc: Exception) -> JSONResponse:
    # What Chroma refuses (a filter, the data) is the client's 422.
    log.info("%s %s: Chroma refused: %s", request.method, request.url.path, exc)
    if isinstance(exc, InvalidFilter):
        issue = {"type": "invalid_filter", "loc": ["body", "where"], "msg": f"invalid where filter: {exc}"}
    else:
        issue = {"type": "rejected_by_index", "loc": ["body"], "msg": f"the index refused the data: {exc}"}
    return validation_error([issue])


def register_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation_failed)
    app.add_exception_handler(PartialWrite, _partial_write)
    for unavailable_error in (StoreUnavailable, RolloutInProgress, IndexMismatch):
        app.add_exception_handler(unavailable_error, _unavailable)
    app.add_exception_handler(StoreRejected, _refused)  # InvalidFilter's too: a subclass
    app.add_exception_handler(Overloaded, _overloaded)


Responses = dict[int | str, dict[str, Any]]


def described(status: int, description: str, example: str, model: type[BaseModel] = ErrorBody) -> Responses:
    return {
        status: {
            "model": model,
            "description": description,
            "content": {"application/json": {"example": {"detail": example}}},
        }
    }


# For the OpenAPI `responses=` of the routes: every status a route can answer, with its body.
STORE_RESPONSES: Responses = described(
    503,
    "Chroma is unreachable, stalled or failed, or this worker is at its backpressure limit; "
    "nothing was changed. Retry after the `Retry-After` seconds.",
    STORE_DOWN,
)
BODY_RESPONSES: Responses = {
    **described(
        400,
        "The body cannot be parsed at all: not UTF-8, or numbers or nesting beyond what the JSON "
        "parser takes (over 4,300 digits, about 1,000 levels).",
        "There was an error parsing the body",
    ),
    **described(
        413,
        "The body is larger than the service's limit (`*_MAX_BODY_BYTES`); refused before it is read.",
        "request body is larger than 65536 bytes (QUERY_MAX_BODY_BYTES)",
    ),
    **described(
        415,
        "The body was not sent as `Content-Type: application/json`.",
        "the body must be JSON sent as Content-Type: application/json, not 'text/plain'",
    ),
    422: {
        "model": ValidationErrorBody,
        "description": "Invalid input: `loc` names the field, `msg` the limit",
    },
}
UNAUTHORIZED: Responses = described(
    401, "INGEST_API_KEY is set and X-API-Key is missing or wrong", "missing X-API-Key header"
)
