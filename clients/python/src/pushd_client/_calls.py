"""Every operation once, as data: the HTTP request to make and how to read its answer, or the
text-port lines to send. The sync and asyncio clients only carry them out."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable, Iterable, List, Mapping, Optional, Sequence, Tuple, Union
from urllib.parse import quote

from ._model import (
    Connection,
    GroupInfo,
    GroupSent,
    Member,
    OnlineUid,
    PushdRefused,
    Reply,
    Sent,
)

Uid = Union[str, int]
Data = Union[Mapping[str, Any], str]


@dataclass
class Call:
    """One HTTP request and how to read its answer."""

    method: str
    path: str
    body: Optional[bytes]
    #: Statuses that are answers, not errors (404 often is: "offline", "not a member").
    answers: Tuple[int, ...]
    read: Callable[[int, Any], Any]


def _segment(name: Uid) -> str:
    return quote(str(name), safe="")


def _json(body: Any) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


def send(uid: Uid, message: str, transient: bool) -> Call:
    query = "?transient=1" if transient else ""
    return Call("POST", f"/v1/send/{_segment(uid)}{query}", message.encode(), (200, 404),
                lambda _, b: Sent(b["delivered"], b["queued"]))


def broadcast(message: str) -> Call:
    return Call("POST", "/v1/broadcast", message.encode(), (200,), lambda _, b: b["delivered"])


def kick(uid: Uid, reason: Optional[str], ban: Optional[str]) -> Call:
    body = {k: v for k, v in (("reason", reason), ("ban", ban)) if v is not None}
    return Call("POST", f"/v1/kick/{_segment(uid)}", _json(body) if body else None, (200, 404),
                lambda _, b: b["kicked"])


def online(uid: Uid) -> Call:
    return Call("GET", f"/v1/online/{_segment(uid)}", None, (200, 404),
                lambda _, b: b["connections"])


def list_online() -> Call:
    def read(_: int, body: Any) -> List[OnlineUid]:
        return [OnlineUid(u["uid"], [Connection(c["id"], c["peer"], c["idle_ms"],
                                                c["connected_ms"], c.get("node"))
                                     for c in u["connections"]])
                for u in body]
    return Call("GET", "/v1/list", None, (200,), read)


def stats() -> Call:
    return Call("GET", "/v1/stats", None, (200,), lambda _, b: b)


def group_add(group: Uid, uids: Iterable[Uid], ttl: Optional[str]) -> Call:
    body: dict = {"add": [str(u) for u in uids]}
    if ttl is not None:
        body["ttl"] = ttl
    return Call("POST", f"/v1/groups/{_segment(group)}/members", _json(body), (200,),
                lambda _, b: b["added"])


def group_remove(group: Uid, uids: Iterable[Uid]) -> Call:
    body = {"remove": [str(u) for u in uids]}
    return Call("POST", f"/v1/groups/{_segment(group)}/members", _json(body), (200,),
                lambda _, b: b["removed"])


def group_drop(group: Uid) -> Call:
    return Call("DELETE", f"/v1/groups/{_segment(group)}", None, (200, 404),
                lambda _, b: b["removed"])


def group_members(group: Uid) -> Call:
    def read(status: int, body: Any) -> List[Member]:
        if status == 404:
            return []
        return [Member(m["uid"], m["connections"], m["expires_ms"]) for m in body["members"]]
    return Call("GET", f"/v1/groups/{_segment(group)}", None, (200, 404), read)


def groups() -> Call:
    return Call("GET", "/v1/groups", None, (200,),
                lambda _, b: [GroupInfo(g["group"], g["members"], g["online"]) for g in b])


def uid_groups(uid: Uid) -> Call:
    return Call("GET", f"/v1/uids/{_segment(uid)}/groups", None, (200,), lambda _, b: b["groups"])


def send_group(group: Uid, message: str, transient: bool) -> Call:
    query = "?transient=1" if transient else ""
    return Call("POST", f"/v1/groups/{_segment(group)}/send{query}", message.encode(),
                (200, 404), lambda _, b: GroupSent(b["delivered"], b["queued"], b["members"]))


def answer(call: Call, status: int, body: bytes) -> Any:
    """The call's result, or PushdRefused with pushd's sentence."""
    try:
        parsed = json.loads(body) if body else None
    except ValueError:
        parsed = None
    if status not in call.answers or parsed is None:
        message = parsed.get("error") if isinstance(parsed, dict) else None
        raise PushdRefused(status, message or body.decode(errors="replace").strip())
    return call.read(status, parsed)


def line(target: str, name: Uid, data: Data, transient: bool) -> bytes:
    """A text-port line: `data` (a mapping, or a string sent as `{"message": ...}`) with the
    uid or group; the page receives the whole line, as in the original recipe."""
    if isinstance(data, str):
        data = {"message": data}
    fields = {target: name if isinstance(name, int) and target == "uid" else str(name)}
    fields.update({k: v for k, v in data.items() if k not in ("uid", "group")})
    if transient:
        fields["transient"] = True
    return json.dumps(fields, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def replies(lines: Sequence[bytes]) -> List[Reply]:
    return [Reply(r.decode().strip()) for r in lines]


def drop_in_line(uid: Uid, message: Any) -> bytes:
    """The original recipe's push: a JSON object with the uid; a message that is itself a JSON
    object (as a string or a mapping) is sent with the uid added, any other as `message`."""
    if isinstance(message, (str, bytes)):
        try:
            decoded = json.loads(message)
        except ValueError:
            decoded = None
        message = decoded if isinstance(decoded, dict) else {"message": message if isinstance(message, str) else message.decode()}
    return line("uid", uid, message, False)
