"""Every operation of pushd-client against a real pushd, sync or asyncio (argv[1]).

Run by tests/e2e/clients.rs, which starts pushd (--http-listen, --http-token-file), binds one
page to uid 42, sets PUSHD_TEXT, PUSHD_HTTP and PUSHD_TOKEN, and afterwards checks what the
page received, in order, and that it was kicked last."""

import asyncio
import inspect
import sys

from pushd_client import (AsyncPushd, GroupInfo, GroupSent, Pushd, PushdRefused,
                          PushdUnavailable, Reply, Sent, send_message_by_uid)


async def run(client, call):
    """The result of a client call, awaited if the client is the asyncio one."""
    result = call(client)
    return await result if inspect.isawaitable(result) else result


def expect(got, want, what):
    assert got == want, f"{what}: got {got!r}, want {want!r}"


async def check(make):
    pushd = make()
    r = lambda call: run(pushd, call)  # noqa: E731
    expect(await r(lambda p: p.push(42, {"text": "hello"})), Reply.OK, "push to an online uid")
    expect(await r(lambda p: p.push("nobody", "x")), Reply.QUEUED, "push to an offline uid")
    expect(await r(lambda p: p.push(42, {"t": 1}, transient=True)), Reply.OK, "transient, online")
    away = await r(lambda p: p.push("away", "x", transient=True))
    expect((away, bool(away)), (Reply.FAIL, False), "transient, offline")
    expect(await r(lambda p: p.push_many([(42, {"n": 1}), (42, {"n": 2})])),
           [Reply.OK, Reply.OK], "push_many")
    expect(await r(lambda p: p.send(42, "plain")), Sent(1, False), "send")
    gone = await r(lambda p: p.send("away", "x", transient=True))
    expect((gone, bool(gone)), (Sent(0, False), False), "send, transient, offline")
    expect(await r(lambda p: p.online(42)), 1, "online")
    expect(await r(lambda p: p.online("away")), 0, "offline")
    listed = await r(lambda p: p.list())
    expect([(u.uid, len(u.connections)) for u in listed], [("42", 1)], "list")
    expect(await r(lambda p: p.group_add("team a", [42, "g2"])), 2, "group_add")
    members = await r(lambda p: p.group_members("team a"))
    expect([(m.uid, m.connections, m.expires_ms) for m in members],
           [("42", 1, None), ("g2", 0, None)], "group_members")
    expect(await r(lambda p: p.groups()), [GroupInfo("team a", 2, 1)], "groups")
    expect(await r(lambda p: p.uid_groups(42)), ["team a"], "uid_groups")
    expect(await r(lambda p: p.push_group("team a", {"g": 1})), Reply.OK, "push_group")
    expect(await r(lambda p: p.send_group("team a", "gm")), GroupSent(1, 1, 2), "send_group")
    expect(await r(lambda p: p.group_remove("team a", ["g2"])), 1, "group_remove")
    expect(await r(lambda p: p.group_drop("team a")), 1, "group_drop")
    expect(await r(lambda p: p.group_members("team a")), [], "no members")
    expect(await r(lambda p: p.broadcast("all")), 1, "broadcast")
    expect((await r(lambda p: p.stats()))["uids"], 1, "stats")
    expect(send_message_by_uid(42, '{"percent":"88%"}'), True, "send_message_by_uid")
    expect(send_message_by_uid("away", "x"), True, "send_message_by_uid, queued")

    wrong = make(token="not-the-token-at-all")
    try:
        await run(wrong, lambda p: p.online(42))
        raise AssertionError("a wrong token was accepted")
    except PushdRefused as refused:
        expect(refused.status, 401, "wrong token")
    nowhere = make(text="127.0.0.1:1", http="http://127.0.0.1:1")
    for call in (lambda p: p.online(42), lambda p: p.push(42, "x")):
        try:
            await run(nowhere, call)
            raise AssertionError("nothing listens there")
        except PushdUnavailable:
            pass
    try:
        await r(lambda p: p.kick(42, ban="forever and a day"))
        raise AssertionError("a bad ban was accepted")
    except PushdRefused as refused:
        expect(refused.status, 400, "bad ban")
    expect(await r(lambda p: p.kick(42, reason="bye")), 1, "kick")
    for client in (pushd, wrong, nowhere):
        closed = client.close()
        if inspect.isawaitable(closed):
            await closed


if __name__ == "__main__":
    mode = sys.argv[1]
    asyncio.run(check({"sync": Pushd, "async": AsyncPushd}[mode]))
    print(f"{mode}: every check passed")
