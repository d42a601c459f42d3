"""Typed dependencies of the query routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from services.common.state import ServiceState, get_state
from services.query.config import Settings
from services.query.feedback import Feedback, feedback_of

StateDep = Annotated[ServiceState[Settings], Depends(get_state)]
FeedbackDep = Annotated[Feedback, Depends(feedback_of)]
