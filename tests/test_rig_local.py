"""The rig socket on the event loop (the in-process safety side): the same socket rules
as the safety process's (``controller.safety.rig_server.listen``)."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path

import pytest

from controller.io.rig import Rig, RigError, serve


def status(_evse: int | None) -> dict[str, object]:
    return {"evse": 1}


def test_serves_replaces_a_stale_socket_and_refuses_a_live_one(tmp_path: Path) -> None:
    path = tmp_path / "sim.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()  # a socket file nobody listens on: what a killed daemon leaves

    async def run() -> dict[str, object]:
        server = await serve(Rig(None, status, [1]), path)
        try:
            with pytest.raises(RigError, match="already listening"):
                await serve(Rig(None, status, [1]), path)
            reader, writer = await asyncio.open_unix_connection(str(path))
            writer.write(b'{"cmd": "status", "evse": 1}\n')
            reply: dict[str, object] = json.loads(await reader.readline())
            writer.close()
            return reply
        finally:
            server.close()

    assert asyncio.run(run()) == {"ok": True, "evse": 1}
