"""Typed dependencies of the query routes."""

from __future__ import annotations

from typing import Annotated, cast

from fastapi import Depends, Request

from services.common.state import ServiceState
from services.query.config import Settings


def get_state(request: Request) -> ServiceState[Settings]:
    # Put there by the lifespan in main.py.
    return cast(ServiceState[Settings], request.state.service)


StateDep = Annotated[ServiceState[Settings], Depends(get_state)]
