"""Typed dependencies of the ingestion routes."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Security, status
from fastapi.security import APIKeyHeader
from pydantic import SecretStr
from starlette.datastructures import Headers

from services.common.state import ServiceState, get_state
from services.ingest.config import Settings

StateDep = Annotated[ServiceState[Settings], Depends(get_state)]

api_key_header = APIKeyHeader(
    name="X-API-Key",
    auto_error=False,
    description="Needed by POST and DELETE when the service runs with INGEST_API_KEY set",
)


# Methods that change the index; reads stay open.
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def key_problem(expected: SecretStr | None, key: str | None) -> str | None:
    """Why `key` does not open writes (None when it does, or when no key is configured)."""
    if expected is None:
        return None
    if key is None:
        return "missing X-API-Key header"
    # Constant time, so the answer's timing does not reveal how much of the key matched.
    if not secrets.compare_digest(key.encode(), expected.get_secret_value().encode()):
        return "invalid X-API-Key header"
    return None


def write_guard(settings: Settings) -> Callable[[str, Headers], str | None]:
    """For services.common.limits.RequestGuard: the key check on writes, before the body is read."""

    def authorize(method: str, headers: Headers) -> str | None:
        if method not in WRITE_METHODS:
            return None
        return key_problem(settings.api_key, headers.get("x-api-key"))

    return authorize


async def require_api_key(state: StateDep, key: Annotated[str | None, Security(api_key_header)]) -> None:
    # RequestGuard has already refused a bad key; this declares the scheme in OpenAPI and checks again.
    problem = key_problem(state.settings.api_key, key)
    if problem is not None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, problem)


WriteAccess = Depends(require_api_key)
