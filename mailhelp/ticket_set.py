"""``tickets set N [--status S] [--assign A] [--priority P] [--category C] [--school S]
[--room R]``: a change from the terminal, made as a staff member's ``#commands`` by
mail would make it.

The options become command lines (``#resolve``, ``#assign tech@...``) that the desk's
own parser checks and its command functions carry out (desk/commands.py), in one
transaction with the mail they cause (resolved notice, assignment mail), by the actor
``cli:<unix user>``. Either every change is made or none.
"""

from __future__ import annotations

import getpass
import logging
from datetime import datetime

from .desk import commands
from .errors import MailhelpError, UsageError
from .states import TicketStatus

log = logging.getLogger(__name__)

STATUS_COMMANDS = {TicketStatus.OPEN: "open", TicketStatus.PENDING: "pending",
                   TicketStatus.RESOLVED: "resolve", TicketStatus.CLOSED: "close"}
# The options that take a value, each the #command of its name, in this order ("" for
# category, school and room clears them, as the command alone does by mail).
VALUED = ("assign", "priority", "category", "school", "room")


def command_lines(args) -> list[str]:
    """The options as ``#command`` lines; decided before anything is read or written."""
    lines = []
    if args.status is not None:
        if args.status not in STATUS_COMMANDS:
            raise UsageError(f"--status: a ticket can be set to "
                             f"{', '.join(STATUS_COMMANDS)}, not {args.status}")
        lines.append("#" + STATUS_COMMANDS[TicketStatus(args.status)])
    for option in VALUED:
        value = getattr(args, option)
        if value is None:
            continue
        if "\n" in value or "\r" in value:  # a second line would be a command of its own
            raise UsageError(f"--{option}: give one line")
        lines.append(f"#{option} {value}".rstrip())  # an empty name: the command alone
    if not lines:
        raise UsageError("tickets set: give --status, " + ", ".join(
            f"--{option}" for option in VALUED[:-1]) + f" or --{VALUED[-1]}")
    parsed = commands.parse("\n".join(lines))
    if parsed.error:
        raise UsageError(parsed.error.replace("#", "--", 1))
    return lines


def actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def apply(tx, config, ticket, lines: list[str], who: str, now: datetime, store) -> list[str]:
    """Run the command lines on the ticket and queue their mail; return what changed."""
    if ticket.merged_into_id is not None:
        # Its request goes on as the survivor's (desk/merge.py); mail on it goes there.
        # Told rather than sent on, the user changes the ticket they mean knowingly.
        raise MailhelpError(f"ticket {ticket.id} was merged into #{ticket.merged_into_id}; "
                            f"change #{ticket.merged_into_id} instead")
    from .desk import notices, schedule, staffmail
    from .desk.tickets import event, person, set_status
    from .mail.parse import Address

    def assign(address: str) -> None:
        ticket.assignee_id = person(tx, Address("", address), now).id
        event(tx, ticket, now, who, "assigned", address)
        schedule.reschedule(tx, config, ticket, now)  # taken: no escalation

    def no_people(_address: str):
        raise AssertionError("tickets set changes no participants")

    env = commands.Env(tx=tx, ticket=ticket, actor=who, now=now,
                       is_staff=config.staff.is_staff,
                       set_status=lambda status: set_status(tx, config, ticket, status, who,
                                                            now),
                       add_participant=no_people, remove_participant=no_people,
                       assign=assign, config=config)
    effects = commands.Effects()
    for command in commands.parse("\n".join(lines)).commands:
        problem = commands.run(command, env, effects)
        if problem:  # the transaction is rolled back: nothing was changed
            raise MailhelpError(f"ticket {ticket.id}: {problem.replace('#', '--', 1)}")
    if effects.assigned:
        staffmail.assignment(tx, config, ticket, effects.assigned, who, store,
                             commands.usage(), now)
    if effects.resolved:
        notices.resolved(tx, config, ticket, now)
    changes = effects.changes or []
    event(tx, ticket, now, who, "command_line", "; ".join(changes))
    ticket.updated_at = now
    log.info("ticket=%s action=cli_set actor=%s changes=%s", ticket.id, who,
             "; ".join(changes))
    return changes
