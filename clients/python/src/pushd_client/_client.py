"""The clients: `Pushd` (blocking) and `AsyncPushd` (asyncio). Both have the same methods,
written once in `_Operations`; a method of `AsyncPushd` returns a coroutine to await."""

from __future__ import annotations

import asyncio
import http.client
import os
import socket
import ssl
import threading
from typing import Any, Iterable, List, Optional, Sequence, Tuple
from urllib.parse import urlsplit

from . import _calls
from ._calls import Call, Data, Uid
from ._model import PushdUnavailable

DEFAULT_TEXT = "127.0.0.1:5678"
DEFAULT_HTTP = "http://127.0.0.1:8080"


def _host_port(address: str) -> Tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


class _Operations:
    """Every operation, carried out by `_call` (an HTTP call) or `_push` (text-port lines)."""

    def __init__(self, text: Optional[str], http: Optional[str], token: Optional[str],
                 timeout: float):
        self.text = text or os.environ.get("PUSHD_TEXT") or DEFAULT_TEXT
        self.http = (http or os.environ.get("PUSHD_HTTP") or DEFAULT_HTTP).rstrip("/")
        self.token = token if token is not None else os.environ.get("PUSHD_TOKEN")
        self.timeout = timeout

    def _call(self, call: Call) -> Any:
        raise NotImplementedError

    def _push(self, lines: Sequence[bytes], single: bool) -> Any:
        raise NotImplementedError

    def _headers(self, body: Optional[bytes]) -> dict:
        headers = {"Host": urlsplit(self.http).netloc, "Connection": "keep-alive",
                   "Content-Length": str(len(body or b""))}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    # The text port: one JSON line per push, answered ok, queued or fail.

    def push(self, uid: Uid, data: Data, transient: bool = False):
        """Pushes `data` (a mapping, or a string sent as {"message": ...}) to `uid` through
        the text port; the page receives the whole line. Returns a `Reply`."""
        return self._push([_calls.line("uid", uid, data, transient)], True)

    def push_many(self, pushes: Iterable[Tuple[Uid, Data]], transient: bool = False):
        """Pushes each (uid, data) in one write; a `Reply` for each, in order."""
        return self._push([_calls.line("uid", u, d, transient) for u, d in pushes], False)

    def push_group(self, group: Uid, data: Data, transient: bool = False):
        """Pushes `data` to every member of `group` through the text port; a `Reply`."""
        return self._push([_calls.line("group", group, data, transient)], True)

    # The HTTP API.

    def send(self, uid: Uid, message: str, transient: bool = False):
        """Sends `message` as it is to every connection of `uid`; a `Sent`."""
        return self._call(_calls.send(uid, message, transient))

    def send_group(self, group: Uid, message: str, transient: bool = False):
        """Sends `message` to every member of `group`; a `GroupSent`."""
        return self._call(_calls.send_group(group, message, transient))

    def broadcast(self, message: str):
        """Sends `message` to every bound connection; how many took it."""
        return self._call(_calls.broadcast(message))

    def kick(self, uid: Uid, reason: Optional[str] = None, ban: Optional[str] = None):
        """Closes every connection of `uid` (4000, or 4003 with a `ban` such as "1h"); how many."""
        return self._call(_calls.kick(uid, reason, ban))

    def online(self, uid: Uid):
        """How many connections `uid` has (0: offline)."""
        return self._call(_calls.online(uid))

    def list(self):
        """Every online uid with its connections: a list of `OnlineUid`."""
        return self._call(_calls.list_online())

    def stats(self):
        """pushd's figures, as `pushctl --json stats` shows them (a dict)."""
        return self._call(_calls.stats())

    def group_add(self, group: Uid, uids: Iterable[Uid], ttl: Optional[str] = None):
        """Makes `uids` members of `group` (for `ttl`, such as "1h", or for good); how many
        were added. A limit's refusal raises `PushdRefused` (429)."""
        return self._call(_calls.group_add(group, uids, ttl))

    def group_remove(self, group: Uid, uids: Iterable[Uid]):
        """Ends `uids`' memberships of `group`; how many were members."""
        return self._call(_calls.group_remove(group, uids))

    def group_drop(self, group: Uid):
        """Removes `group`; how many members it had."""
        return self._call(_calls.group_drop(group))

    def group_members(self, group: Uid):
        """The members of `group` (a list of `Member`; empty when it has none)."""
        return self._call(_calls.group_members(group))

    def groups(self):
        """Every group: a list of `GroupInfo`."""
        return self._call(_calls.groups())

    def uid_groups(self, uid: Uid):
        """The names of the groups `uid` belongs to."""
        return self._call(_calls.uid_groups(uid))


class Pushd(_Operations):
    """A blocking client; one connection to each port, kept open, safe to share between
    threads (requests take turns)."""

    def __init__(self, text: Optional[str] = None, http: Optional[str] = None,
                 token: Optional[str] = None, timeout: float = 5.0):
        super().__init__(text, http, token, timeout)
        self._lock = threading.Lock()
        self._text: Optional[Tuple[socket.socket, Any]] = None
        self._conn: Optional[http.client.HTTPConnection] = None

    def close(self) -> None:
        with self._lock:
            if self._text:
                self._text[0].close()
                self._text = None
            if self._conn:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> "Pushd":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _push(self, lines: Sequence[bytes], single: bool) -> Any:
        with self._lock:
            try:
                if self._text is None:
                    sock = socket.create_connection(_host_port(self.text), self.timeout)
                    self._text = (sock, sock.makefile("rb"))
                sock, reader = self._text
                sock.sendall(b"".join(lines))
                answers = [reader.readline() for _ in lines]
                if not all(a.endswith(b"\n") for a in answers):
                    raise OSError("the text port closed the connection")
            except OSError as err:
                if self._text:
                    self._text[0].close()
                    self._text = None
                raise PushdUnavailable(f"text port {self.text}: {err}") from err
        replies = _calls.replies(answers)
        return replies[0] if single else replies

    def _call(self, call: Call) -> Any:
        with self._lock:
            for attempt in (1, 2):
                try:
                    if self._conn is None:
                        self._conn = _http_connection(self.http, self.timeout)
                    self._conn.request(call.method, urlsplit(self.http).path + call.path,
                                       body=call.body, headers=self._headers(call.body))
                    response = self._conn.getresponse()
                    status, body = response.status, response.read()
                    break
                except (OSError, http.client.HTTPException) as err:
                    if self._conn:
                        self._conn.close()
                        self._conn = None
                    # A kept connection the server closed meanwhile: once more, afresh.
                    if attempt == 2 or not isinstance(err, (http.client.RemoteDisconnected,
                                                             BrokenPipeError,
                                                             ConnectionResetError)):
                        raise PushdUnavailable(f"HTTP API {self.http}: {err}") from err
        return _calls.answer(call, status, body)


def _http_connection(base: str, timeout: float) -> http.client.HTTPConnection:
    url = urlsplit(base)
    if url.scheme == "https":
        return http.client.HTTPSConnection(url.netloc, timeout=timeout,
                                           context=ssl.create_default_context())
    return http.client.HTTPConnection(url.netloc, timeout=timeout)


class AsyncPushd(_Operations):
    """The asyncio client: the same methods as `Pushd`, each to be awaited."""

    def __init__(self, text: Optional[str] = None, http: Optional[str] = None,
                 token: Optional[str] = None, timeout: float = 5.0):
        super().__init__(text, http, token, timeout)
        self._text_lock = asyncio.Lock()
        self._http_lock = asyncio.Lock()
        self._text: Optional[Tuple[asyncio.StreamReader, asyncio.StreamWriter]] = None
        self._conn: Optional[Tuple[asyncio.StreamReader, asyncio.StreamWriter]] = None

    async def close(self) -> None:
        for pair in (self._text, self._conn):
            if pair:
                pair[1].close()
        self._text = self._conn = None

    async def __aenter__(self) -> "AsyncPushd":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def _push(self, lines: Sequence[bytes], single: bool) -> Any:
        async with self._text_lock:
            try:
                if self._text is None:
                    self._text = await asyncio.wait_for(
                        asyncio.open_connection(*_host_port(self.text)), self.timeout)
                reader, writer = self._text
                writer.write(b"".join(lines))
                await writer.drain()
                answers = [await asyncio.wait_for(reader.readline(), self.timeout)
                           for _ in lines]
                if not all(a.endswith(b"\n") for a in answers):
                    raise OSError("the text port closed the connection")
            except (OSError, asyncio.TimeoutError) as err:
                if self._text:
                    self._text[1].close()
                    self._text = None
                raise PushdUnavailable(f"text port {self.text}: {err!r}") from err
        replies = _calls.replies(answers)
        return replies[0] if single else replies

    async def _call(self, call: Call) -> Any:
        url = urlsplit(self.http)
        async with self._http_lock:
            for attempt in (1, 2):
                fresh = self._conn is None
                try:
                    if self._conn is None:
                        port = url.port or (443 if url.scheme == "https" else 80)
                        tls = ssl.create_default_context() if url.scheme == "https" else None
                        self._conn = await asyncio.wait_for(
                            asyncio.open_connection(url.hostname, port, ssl=tls), self.timeout)
                    status, body = await asyncio.wait_for(
                        self._exchange(url.path + call.path, call), self.timeout)
                    break
                except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError,
                        ValueError) as err:
                    if self._conn:
                        self._conn[1].close()
                        self._conn = None
                    if attempt == 2 or fresh:
                        raise PushdUnavailable(f"HTTP API {self.http}: {err!r}") from err
        return _calls.answer(call, status, body)

    async def _exchange(self, path: str, call: Call) -> Tuple[int, bytes]:
        """One HTTP/1.1 request on the kept connection; the status and the whole body."""
        assert self._conn is not None
        reader, writer = self._conn
        head = f"{call.method} {path} HTTP/1.1\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in self._headers(call.body).items()) + "\r\n"
        writer.write(head.encode() + (call.body or b""))
        await writer.drain()
        status_line = await reader.readline()
        if not status_line:
            raise ConnectionResetError("the HTTP API closed the connection")
        status = int(status_line.split()[1])
        headers = {}
        while True:
            header = await reader.readline()
            if header in (b"\r\n", b"\n", b""):
                break
            name, _, value = header.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = b""
            while True:
                size = int((await reader.readline()).split(b";")[0], 16)
                if size == 0:
                    while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                body += await reader.readexactly(size)
                await reader.readline()
        else:
            body = await reader.readexactly(int(headers.get("content-length", "0")))
        if headers.get("connection", "").lower() == "close":
            writer.close()
            self._conn = None
        return status, body


def send_message_by_uid(uid: Uid, message: Any, address: Optional[str] = None,
                        timeout: float = 5.0) -> bool:
    """The original recipe's call: pushes `message` to `uid` through the text port (a JSON
    object, as a string or a mapping, gets the uid added; anything else is sent as
    {"uid": ..., "message": ...}). True when a connection took it or its mailbox kept it."""
    host_port = _host_port(address or os.environ.get("PUSHD_TEXT") or DEFAULT_TEXT)
    try:
        with socket.create_connection(host_port, timeout) as sock:
            sock.sendall(_calls.drop_in_line(uid, message))
            answer = sock.makefile("rb").readline()
    except OSError as err:
        raise PushdUnavailable(f"text port {host_port[0]}:{host_port[1]}: {err}") from err
    return answer.strip() in (b"ok", b"queued")
