"""Typed dependencies of the ingestion routes."""

from __future__ import annotations

import secrets
from typing import Annotated, cast

from fastapi import Depends, HTTPException, Request, Security, status
from fastapi.security import APIKeyHeader

from services.common.state import ServiceState
from services.ingest.config import Settings


def get_state(request: Request) -> ServiceState[Settings]:
    # Put there by the lifespan in main.py.
    return cast(ServiceState[Settings], request.state.service)


StateDep = Annotated[ServiceState[Settings], Depends(get_state)]

api_key_header = APIKeyHeader(
    name="X-API-Key",
    auto_error=False,
    description="Needed by POST and DELETE when the service runs with INGEST_API_KEY set",
)


def require_api_key(state: StateDep, key: Annotated[str | None, Security(api_key_header)]) -> None:
    expected = state.settings.api_key
    if expected is None:
        return
    if key is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "missing X-API-Key header")
    if not secrets.compare_digest(key.encode(), expected.get_secret_value().encode()):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "invalid X-API-Key header")


WriteAccess = Depends(require_api_key)
