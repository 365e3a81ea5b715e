"""What pushd answers, as objects, and what goes wrong, as exceptions."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import List, Optional


class Reply(str, enum.Enum):
    """The text port's answer to one push line."""

    #: A connection took it.
    OK = "ok"
    #: No connection took it; it waits in the mailbox (of at least one member, for a group).
    QUEUED = "queued"
    #: Neither: nobody online and not kept (transient, banned, mailbox off or full), or a bad line.
    FAIL = "fail"

    def __bool__(self) -> bool:
        return self is not Reply.FAIL

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Sent:
    """A push to one uid through the HTTP API."""

    delivered: int
    queued: bool

    def __bool__(self) -> bool:
        return self.delivered > 0 or self.queued


@dataclass(frozen=True)
class GroupSent:
    """A push to a group: connections that took it, members whose mailbox kept it, members."""

    delivered: int
    queued: int
    members: int

    def __bool__(self) -> bool:
        return self.delivered > 0 or self.queued > 0


@dataclass(frozen=True)
class Connection:
    id: int
    peer: str
    idle_ms: int
    connected_ms: int
    #: In cluster mode, the node holding it.
    node: Optional[str] = None


@dataclass(frozen=True)
class OnlineUid:
    uid: str
    connections: List[Connection] = field(default_factory=list)


@dataclass(frozen=True)
class Member:
    uid: str
    connections: int
    #: Milliseconds until the membership ends; None without a TTL.
    expires_ms: Optional[int]


@dataclass(frozen=True)
class GroupInfo:
    group: str
    members: int
    online: int


class PushdError(Exception):
    """Anything that kept a request from being carried out."""


class PushdUnavailable(PushdError):
    """pushd could not be reached, or the connection broke before its answer."""


class PushdRefused(PushdError):
    """pushd answered with an error: `status` (HTTP) and its sentence."""

    def __init__(self, status: int, message: str):
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message
