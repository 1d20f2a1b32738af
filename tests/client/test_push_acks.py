"""The push stream re-sends acks a dropped socket may have lost (a node died after the client
sent an ack frame and before it answered ``acked``): after the reconnect the stream resumes
after the last seq it yielded, so without the re-send those messages would stay queued."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve

from doorless.client.transport import DeviceIdentity, Transport

pytestmark = pytest.mark.asyncio


def _message(seq: int) -> str:
    data = base64.b64encode(b"ciphertext %d" % seq).decode()
    return json.dumps({"type": "message", "seq": seq, "data": data, "received_at": 1})


class FakeNode:
    """A push endpoint whose first connection dies after taking an ack without answering."""

    def __init__(self) -> None:
        self.connections = 0
        self.acks: list[tuple[int, list[int]]] = []  # (connection, seqs) as received
        self.afters: list[str] = []

    async def handler(self, ws: ServerConnection) -> None:
        self.connections += 1
        n = self.connections
        assert ws.request is not None
        self.afters.append(ws.request.path)
        if n == 1:
            await ws.send(_message(1))
            await ws.send(_message(2))
            frame = json.loads(await ws.recv())
            self.acks.append((n, frame["seqs"]))
            await ws.send(json.dumps({"type": "acked", "acknowledged": len(frame["seqs"])}))
            frame = json.loads(await ws.recv())
            self.acks.append((n, frame["seqs"]))
            return  # dies: this ack is lost, never answered
        async for raw in ws:
            frame = json.loads(raw)
            self.acks.append((n, frame["seqs"]))
            await ws.send(json.dumps({"type": "acked", "acknowledged": len(frame["seqs"])}))
            if n == 2:
                await ws.send(_message(3))


async def test_unconfirmed_acks_are_sent_again_after_a_reconnect() -> None:
    node = FakeNode()
    async with serve(node.handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        t = Transport(
            f"http://127.0.0.1:{port}", DeviceIdentity.generate(), backoff=0.01, retries=0
        )

        async def token() -> str:
            return "token"

        t._ensure_token = token  # type: ignore[method-assign]
        seen: list[int] = []
        try:
            async with asyncio.timeout(10), t.push(max_reconnects=3) as stream:
                async for event in stream:
                    seq: Any = getattr(event, "seq", None)
                    seen.append(seq)
                    await stream.ack([seq])
                    if seq == 3:
                        break
                    if seq == 2:
                        assert stream.unconfirmed in ([2], [1, 2])
                assert stream.unconfirmed == [3]  # its "acked" is not read yet
        finally:
            await t.aclose()
    assert seen == [1, 2, 3]
    assert node.afters[1].endswith("after=2")  # resumed: message 2 is not pushed again
    # Ack 2 was lost with the first socket and sent again on the second.
    assert node.acks[:2] == [(1, [1]), (1, [2])]
    assert (2, [2]) in node.acks and (2, [3]) in node.acks
