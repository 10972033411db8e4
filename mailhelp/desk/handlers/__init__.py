"""The handlers: one per route, the only code that changes tickets for incoming mail.

Read HANDLERS first: it says what the desk does with each kind of message that
route.py names. Each handler takes the message being handled and its Route, and
returns the Outcome the pipeline logs and files the message by.
"""

from __future__ import annotations

from collections.abc import Callable

from ..route import Route, RouteName
from .bounce import bounce
from .common import Context, Incoming, Outcome, Stored
from .replies import automatic_on_ticket, requester_reply, staff_away, thanks
from .requests import follow_up, held_request, new_request, outsider
from .staff import command_error, staff_answer, unverified
from .survey import survey_answer, survey_refused

__all__ = ["HANDLERS", "Context", "Incoming", "Outcome", "Stored"]


def _dropped(action: str) -> Callable[[Incoming, Route], Outcome]:
    """Nothing is kept or changed; the route's reason is the outcome's detail."""
    def handler(_mail: Incoming, route: Route) -> Outcome:
        return Outcome(action, detail=route.reason)
    return handler


HANDLERS: dict[RouteName, Callable[[Incoming, Route], Outcome]] = {
    RouteName.DUPLICATE: _dropped("duplicate"),
    RouteName.SPAM: _dropped("spam"),
    RouteName.LOOP: _dropped("ignored"),
    RouteName.BOUNCE: bounce,
    RouteName.SURVEY_ANSWER: survey_answer,
    RouteName.SURVEY_REFUSED: survey_refused,
    RouteName.AUTOMATIC: _dropped("ignored"),
    RouteName.AUTOMATIC_ON_TICKET: automatic_on_ticket,
    RouteName.STAFF_AWAY: staff_away,
    RouteName.OUTSIDER: outsider,
    RouteName.NEW_REQUEST: new_request,
    RouteName.HELD_REQUEST: held_request,
    RouteName.UNVERIFIED: unverified,
    RouteName.COMMAND_ERROR: command_error,
    RouteName.STAFF_ANSWER: staff_answer,
    RouteName.FOLLOW_UP: follow_up,
    RouteName.THANKS: thanks,
    RouteName.REQUESTER_REPLY: requester_reply,
}
