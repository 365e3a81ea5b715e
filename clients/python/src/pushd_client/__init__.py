"""pushd-client: push to the pages connected to pushd, through its text port and HTTP API.

    from pushd_client import Pushd
    pushd = Pushd()                      # PUSHD_TEXT, PUSHD_HTTP, PUSHD_TOKEN or the defaults
    pushd.push(42, {"text": "hello"})    # Reply.OK, Reply.QUEUED or Reply.FAIL
"""

from ._client import AsyncPushd, Pushd, send_message_by_uid
from ._model import (
    Connection,
    GroupInfo,
    GroupSent,
    Member,
    OnlineUid,
    PushdError,
    PushdRefused,
    PushdUnavailable,
    Reply,
    Sent,
)

__all__ = [
    "AsyncPushd",
    "Connection",
    "GroupInfo",
    "GroupSent",
    "Member",
    "OnlineUid",
    "Pushd",
    "PushdError",
    "PushdRefused",
    "PushdUnavailable",
    "Reply",
    "Sent",
    "send_message_by_uid",
]
