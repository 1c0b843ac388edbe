"""The chat room end to end, over WebSockets: two web processes and two worker processes on
the real Redis, several users at once; and one process on the embedded fakeredis."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import AsyncIterator

import pytest

from tests.chat.conftest import ChatClient, Proc, Procs, reply_text
from tests.conftest import REAL_URL, _real_client
from tests.streaming import Echo

USERS = ["alice", "bob", "张三", "dave"]


@pytest.fixture
async def real_ns(namespace: str) -> AsyncIterator[str]:
    client = await _real_client()
    yield namespace
    async for key in client.scan_iter(match=f"{namespace}:*"):
        await client.delete(key)
    await client.aclose()


@pytest.fixture
async def room(procs: Procs, real_ns: str) -> list[Proc]:
    """Two web processes and two workers sharing one Redis namespace."""
    webs = await asyncio.gather(procs.web(REAL_URL, real_ns), procs.web(REAL_URL, real_ns))
    await asyncio.gather(procs.worker(REAL_URL, real_ns), procs.worker(REAL_URL, real_ns))
    return list(webs)


async def converse(web: Proc, user: str, n: int) -> tuple[ChatClient, list[str]]:
    """`n` messages from one user, one after the other, each waited for to the end."""
    client = await ChatClient.connect(web.ws_url(user))
    ids = []
    for i in range(n):
        task_id = await client.chat(f"{user} 的第{i}条消息", ref=f"m{i}")
        await client.wait_for(lambda t=task_id: client.ended(t))
        ids.append(task_id)
    return client, ids


@pytest.mark.real_redis
async def test_every_user_gets_exactly_their_replies(room: list[Proc]) -> None:
    talks = await asyncio.gather(*(converse(room[i % 2], user, 3)
                                   for i, user in enumerate(USERS)))
    for user, (client, ids) in zip(USERS, talks, strict=True):
        assert {e["task_id"] for e in client.events()} == set(ids)  # nobody else's
        for i, task_id in enumerate(ids):
            events = client.events(task_id)
            assert [e["cursor"] for e in events] == list(range(1, len(events) + 1))
            final = client.ended(task_id)
            assert final is not None and final["type"] == "task_completed"
            text = final["task"]["result"]["response"]
            assert text == Echo.reply(f"{user} 的第{i}条消息") == reply_text(events)
        assert client.of("error") == []
        await client.close()


@pytest.mark.real_redis
async def test_cancel_stops_the_stream_and_a_reconnect_resumes_it(room: list[Proc]) -> None:
    alice = await ChatClient.connect(room[0].ws_url("alice"))
    slow = await alice.chat("慢慢来", ref="s")
    await alice.wait_for(lambda: reply_text(alice.events(slow)))  # streaming has begun
    await alice.send(action="cancel", task_id=slow)
    final = await alice.wait_for(lambda: alice.ended(slow))
    assert final["type"] == "task_cancelled"
    assert len(reply_text(alice.events(slow))) < len(Echo.reply("慢慢来"))

    other = await alice.chat("慢一点", ref="r")
    await alice.wait_for(lambda: len(reply_text(alice.events(other))) >= 3)
    await alice.close()  # the connection drops mid-stream...
    seen = alice.events(other)
    again = await ChatClient.connect(room[1].ws_url("alice"))  # ...back on the other server
    await again.send(action="follow", task_id=other, after=seen[-1]["cursor"])
    end = await again.wait_for(lambda: again.ended(other))
    events = seen + again.events(other)
    assert [e["cursor"] for e in events] == list(range(1, len(events) + 1))  # no gap, no repeat
    assert reply_text(events) == end["task"]["result"]["response"] == Echo.reply("慢一点")
    await again.close()


@pytest.mark.real_redis
async def test_bad_input_gets_error_frames_and_the_chats_go_on(room: list[Proc]) -> None:
    alice = await ChatClient.connect(room[0].ws_url("alice"))
    mallory = await ChatClient.connect(room[1].ws_url("mallory"))
    alices = await alice.chat("慢慢说", ref="a")
    own = await mallory.chat("慢", ref="m")  # streaming while mallory misbehaves
    bad: list[str | bytes] = ["not json", b"\x00binary", json.dumps({"action": "explode"}),
           json.dumps({"action": "send", "text": "x" * 3000}), "x" * 20_000,
           json.dumps({"action": "follow", "task_id": alices, "after": 0}),
           json.dumps({"action": "cancel", "task_id": alices}),
           json.dumps({"action": "follow", "task_id": "no-such-task"}),
           json.dumps({"action": "follow", "task_id": alices, "after": "x"})]
    for frame in bad:  # (a burst of 10 with her message: none is rate limited yet)
        await mallory.ws.send(frame)
    codes = ["bad_json", "bad_json", "unknown_action", "invalid", "too_large", "not_yours",
             "not_yours", "not_found", "invalid"]
    await mallory.wait_for(lambda: len(mallory.of("error")) == len(codes))
    assert [f["code"] for f in mallory.of("error")] == codes
    for _ in range(40):  # a flood: answered, cheaply, with errors
        await mallory.ws.send(json.dumps({"action": "explode"}))
    await mallory.wait_for(lambda: len(mallory.of("error")) == len(codes) + 40)
    assert {f["code"] for f in mallory.of("error")[len(codes):]} <= {"rate_limited",
                                                                      "unknown_action"}
    assert sum(f["code"] == "rate_limited" for f in mallory.of("error")) >= 25
    # Her own reply still streams to her socket, and alice's chat never noticed.
    mine = await mallory.wait_for(lambda: mallory.ended(own))
    assert mine["type"] == "task_completed"
    theirs = await alice.wait_for(lambda: alice.ended(alices))
    assert theirs["type"] == "task_completed" and alice.of("error") == []
    assert reply_text(alice.events(alices)) == Echo.reply("慢慢说")
    assert {e["task_id"] for e in mallory.events()} == {own}
    await asyncio.gather(alice.close(), mallory.close())


async def test_one_process_on_the_embedded_redis(procs: Procs, namespace: str) -> None:
    web = await procs.web(None, namespace, workers=2)
    page = await asyncio.to_thread(lambda: urllib.request.urlopen(web.url, timeout=10).read())
    assert "聊天室".encode() in page
    client = await ChatClient.connect(web.ws_url("alice"))
    assert client.of("hello") or await client.wait_for(lambda: client.of("hello"))
    task_id = await client.chat("你好", ref="1")
    final = await client.wait_for(lambda: client.ended(task_id))
    assert final["type"] == "task_completed"  # the simulated AI, in the web process
    assert reply_text(client.events(task_id)) == final["task"]["result"]["response"]
    await client.close()
