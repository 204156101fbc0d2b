"""The rig socket on the event loop, for a station whose safety runs in this process
(``controller.runtime.local_safety``, the in-process test bench): newline-delimited JSON
over a Unix socket. A malformed line gets an error reply and the connection stays open."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import Any

from controller.safety.rig_server import listen
from drivers.sim_rig import MAX_LINE, Rig, RigError

__all__ = ["Rig", "RigError", "serve"]


async def _serve_client(rig: Rig, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            try:
                line = await reader.readuntil(b"\n")
            except asyncio.IncompleteReadError as exc:
                line = exc.partial
                if not line.strip():
                    return
            except asyncio.LimitOverrunError:
                await _discard_line(reader)
                reply: dict[str, Any] = {"ok": False, "error": f"line longer than {MAX_LINE} bytes"}
                writer.write(json.dumps(reply).encode() + b"\n")
                await writer.drain()
                continue
            if not line.strip():
                continue
            writer.write(json.dumps(rig.reply_to(line)).encode() + b"\n")
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def _discard_line(reader: asyncio.StreamReader) -> None:
    while True:
        try:
            await reader.readuntil(b"\n")
            return
        except asyncio.LimitOverrunError as exc:
            await reader.readexactly(exc.consumed)


async def serve(rig: Rig, path: Path) -> asyncio.AbstractServer:
    """Listen on ``path`` as the safety process does (``rig_server.listen``: a stale socket
    is replaced, a live one is an error)."""
    sock = await asyncio.to_thread(listen, path)
    return await asyncio.start_unix_server(lambda r, w: _serve_client(rig, r, w), sock=sock, limit=MAX_LINE)
