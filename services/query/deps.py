"""Typed dependencies of the query routes."""

from __future__ import annotations

from typing import Annotated, cast

from fastapi import Depends, Request

from services.common.state import ServiceState
from services.query.config import Settings


def state_of(request: Request) -> ServiceState[Settings]:
    # Put there by the lifespan in main.py.
    return cast(ServiceState[Settings], request.state.service)


async def get_state(request: Request) -> ServiceState[Settings]:
    # `async` though it awaits nothing: FastAPI runs a plain function dependency in its thread pool,
    # a thread hop on every request for one attribute read.
    return state_of(request)


StateDep = Annotated[ServiceState[Settings], Depends(get_state)]
