"""Staff commands: ``#resolve``, ``#assign ADDRESS``... on the first lines of a staff reply.

Parsing is pure: text in, commands and the remaining text out. Each command is one
small function in COMMANDS; the staff answer's handler (handlers/staff.py) runs them
inside its transaction, all or none.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from ..states import TicketStatus

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from ..config import Config
    from ..db.models import Ticket

PRIORITIES = ("low", "normal", "high", "urgent")
# Bounds on what a reply can make the parser do (its address pattern backtracks:
# an argument of 20,000 dots took 2.8 s).
MAX_COMMANDS = 50  # command lines in one reply
MAX_ARGUMENT = 330  # characters: an address has at most 320, and brackets
LOOKED_AT = 1000  # lines from the top where commands may stand
_SHOWN = 200  # characters of a bad line quoted back in an error
_LINE = re.compile(r"^#([a-z]+)\b\s*(.*)$", re.I)
_ADDRESS = re.compile(r"^<?([^<>\s@]+@[^<>\s@]+\.[^<>\s@]+)>?$")
_NUMBER = re.compile(r"^#?(\d{1,9})$")  # #merge's ticket: "12" or "#12"


@dataclass(frozen=True)
class Command:
    name: str
    argument: str
    line: str


@dataclass(frozen=True)
class Parsed:
    commands: tuple[Command, ...]
    text: str  # what is left to relay
    error: str = ""  # the first bad line and what is wrong with it

    @property
    def internal(self) -> bool:
        return any(c.name == "note" for c in self.commands)


@dataclass
class Effects:
    """What the commands did, for the handler to follow up (mail, log)."""

    resolved: bool = False
    status_set: bool = False
    released: bool = False
    assigned: str = ""  # the address an #assign gave the ticket to (not #take)
    merged_into: int | None = None  # #merge: the ticket this one now is part of
    changes: list[str] | None = None

    def record(self, change: str) -> None:
        self.changes = [*(self.changes or []), change]


@dataclass(frozen=True)
class Env:
    """What a command may use: the transaction, the ticket, who sent it, and helpers."""

    tx: Session
    ticket: Ticket
    actor: str
    now: datetime
    is_staff: Callable[[str], bool]
    set_status: Callable[[str], None]
    add_participant: Callable[[str], None]
    remove_participant: Callable[[str], bool]
    assign: Callable[[str], None]
    config: Config | None = None  # [[categories]], for #category


def parse(text: str) -> Parsed:
    """Commands are the lines starting with ``#`` before any other text."""
    lines = text.replace("\r\n", "\n").split("\n")
    commands = []
    index = 0
    while index < min(len(lines), LOOKED_AT):
        line = lines[index].strip()
        if not line:
            index += 1
            continue
        match = _LINE.match(line)
        if not match:
            break
        name, argument = match.group(1).lower(), match.group(2).strip()
        problem = _check(name, argument)
        if not problem and commands and commands[-1].name == "merge":
            problem = "#merge must be the last command (the ticket is gone after it)"
        if not problem and len(commands) == MAX_COMMANDS:
            problem = f"more than {MAX_COMMANDS} commands"
        if problem:
            shown = line if len(line) <= _SHOWN else line[:_SHOWN] + "..."
            return Parsed(tuple(commands), "", f"{shown}: {problem}")
        commands.append(Command(name, argument, line))
        index += 1
    return Parsed(tuple(commands), "\n".join(lines[index:]).strip("\n"))


def _check(name: str, argument: str) -> str:
    spec = COMMANDS.get(name)
    if spec is None:
        return "unknown command"
    if spec.argument == "" and argument:
        return f"#{name} takes no argument"
    if spec.argument == "ADDRESS" and (len(argument) > MAX_ARGUMENT
                                       or not _ADDRESS.match(argument)):
        return f"#{name} needs an email address"
    if spec.argument == "[NAME]" and len(argument) > MAX_ARGUMENT:
        return f"#{name}: the name is too long"
    if spec.argument == "N" and not _NUMBER.match(argument):
        return f"#{name} needs a ticket number"
    if spec.argument == "LEVEL" and argument.lower() not in PRIORITIES:
        return f"#{name} needs one of {', '.join(PRIORITIES)}"
    return ""


def address_of(argument: str) -> str:
    return _ADDRESS.match(argument).group(1).lower()


def usage() -> list[str]:
    return [f"#{name}" + (f" {spec.argument}" if spec.argument else "") + f"  {spec.help}"
            for name, spec in COMMANDS.items()]


def run(command: Command, env: Env, effects: Effects) -> str:
    """Run one command; return an error to report, or ''."""
    return COMMANDS[command.name].function(command.argument, env, effects)


# One small function per command -------------------------------------------------------

def _status(status: TicketStatus) -> Callable[[str, Env, Effects], str]:
    def command(_argument: str, env: Env, effects: Effects) -> str:
        env.set_status(status)
        effects.status_set = True
        effects.resolved = effects.resolved or status == TicketStatus.RESOLVED
        effects.record(f"status {status}")
        return ""
    return command


def _assign(argument: str, env: Env, effects: Effects) -> str:
    address = address_of(argument)
    if not env.is_staff(address):
        return f"#assign {argument}: {address} is not a staff address"
    env.assign(address)
    effects.assigned = address if address != env.actor else ""
    effects.record(f"assigned to {address}")
    return ""


def _take(_argument: str, env: Env, effects: Effects) -> str:
    # The writer is answering already: the ticket is theirs, and no mail tells them so.
    if not env.is_staff(env.actor):
        return f"#take: {env.actor} is not a staff address"
    env.assign(env.actor)
    effects.assigned = ""
    effects.record(f"assigned to {env.actor}")
    return ""


def _priority(argument: str, env: Env, effects: Effects) -> str:
    env.ticket.priority = argument.lower()
    effects.record(f"priority {argument.lower()}")
    return ""


def _note(_argument: str, _env: Env, effects: Effects) -> str:
    effects.record("internal note")
    return ""


def _cc(argument: str, env: Env, effects: Effects) -> str:
    address = address_of(argument)
    if env.is_staff(address):
        return f"#cc {argument}: staff see every ticket already"
    env.add_participant(address)
    effects.record(f"participant {address} added")
    return ""


def _uncc(argument: str, env: Env, effects: Effects) -> str:
    address = address_of(argument)
    if not env.remove_participant(address):
        return f"#uncc {argument}: {address} is not a participant of this ticket"
    effects.record(f"participant {address} removed")
    return ""


def _release(_argument: str, env: Env, effects: Effects) -> str:
    if not env.ticket.held:
        return "#release: this ticket is not held"
    env.ticket.held = None
    effects.released = True
    effects.record("released")
    return ""


def _category(argument: str, env: Env, effects: Effects) -> str:
    # Known names are the config's, so they are checked here, not by the parser; the
    # error lists them. "#category" alone files the ticket under none.
    from .categories import UnknownCategory, set_category

    try:
        name = set_category(env.tx, env.config, env.ticket, argument, env.actor, env.now)
    except UnknownCategory as error:
        return f"#category {argument[:100]}: {error}"
    effects.record(f"category {name or '(none)'}")
    return ""


def _school(argument: str, env: Env, effects: Effects) -> str:
    # Free text: the directory's school is a default, not a list to choose from.
    from .categories import set_school

    set_school(env.tx, env.ticket, argument, env.actor, env.now)
    effects.record(f"school {env.ticket.school or '(none)'}")
    return ""


def _room(argument: str, env: Env, effects: Effects) -> str:
    from .categories import set_school

    set_school(env.tx, env.ticket, env.ticket.school, env.actor, env.now, room=argument)
    effects.record(f"room {env.ticket.room or '(none)'}")
    return ""


def _merge(argument: str, env: Env, effects: Effects) -> str:
    from .merge import MergeError, merge

    survivor = int(_NUMBER.match(argument).group(1))
    if env.config is None:
        return f"#merge {argument}: not possible here"
    try:
        merge(env.tx, env.config, survivor, env.ticket.id, env.actor, env.now)
    except MergeError as error:
        return f"#merge {argument}: {error}"
    effects.merged_into = survivor
    effects.record(f"merged into #{survivor}")
    return ""


@dataclass(frozen=True)
class Spec:
    function: Callable[[str, Env, Effects], str]
    argument: str  # "", "ADDRESS", "LEVEL", "N" (a ticket number) or "[NAME]" (optional)
    help: str


COMMANDS: dict[str, Spec] = {
    "resolve": Spec(_status(TicketStatus.RESOLVED), "", "resolve; the requester is told"),
    "close": Spec(_status(TicketStatus.CLOSED), "", "close without telling the requester"),
    "pending": Spec(_status(TicketStatus.PENDING), "", "waiting on the requester"),
    "open": Spec(_status(TicketStatus.OPEN), "", "reopen / mark as being worked on"),
    "assign": Spec(_assign, "ADDRESS", "assign to a staff member, who is sent the ticket"),
    "take": Spec(_take, "", "assign to yourself"),
    "priority": Spec(_priority, "LEVEL", "low, normal, high or urgent"),
    "note": Spec(_note, "", "keep this whole message internal (staff only)"),
    "cc": Spec(_cc, "ADDRESS", "add a participant who gets every public update"),
    "uncc": Spec(_uncc, "ADDRESS", "remove a participant"),
    "release": Spec(_release, "", "accept a held (unverified) request: its sender is told"),
    "merge": Spec(_merge, "N", "merge this ticket into ticket N (last of the commands)"),
    "category": Spec(_category, "[NAME]", "file under a [[categories]] name; alone: none"),
    "school": Spec(_school, "[NAME]", "the requester's school for this ticket; alone: none"),
    "room": Spec(_room, "[NAME]", "the room for this ticket; alone: none"),
}
