"""A TCP proxy between station and CSMS that breaks the network on command.

    python -m hil.proxy --listen 0.0.0.0:8180 --target 127.0.0.1:9000 [--control 127.0.0.1:8181]

Point the station's ``ocpp.url`` at the proxy. Faults, from Python (``FaultProxy``) or as
lines on the control port (``nc 127.0.0.1 8181``, one command a line, a JSON reply each):

- ``delay SECONDS``: every chunk in either direction arrives that much later;
- ``blackhole on|off``: nothing gets through and new connections hang, as when a link
  goes dead without telling anyone; ``off`` delivers what was held (as TCP would
  retransmit it) and resets the connections that hung;
- ``down on|off``: the port stops listening (connection refused) and open connections close;
- ``drop``: close every open connection cleanly (FIN), once;
- ``reset``: abort every open connection (RST), once;
- ``heal``: no delay, no black hole, up;  ``status``: the settings and counters.

Works for ws:// and wss:// alike: it never looks inside the bytes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import socket
import struct
import sys
import threading
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

_T = TypeVar("_T")
CHUNK = 65536


@dataclass(eq=False)
class _Pair:
    """One relayed connection: the station's side and the CSMS's side."""

    station: asyncio.StreamWriter
    csms: asyncio.StreamWriter | None = None


class FaultProxy:
    """The asyncio proxy; ``ProxyThread`` runs one with blocking methods."""

    def __init__(self, target: tuple[str, int], host: str = "127.0.0.1", port: int = 0) -> None:
        self.target = target
        self.host, self.port = host, port
        self.delay_s = 0.0
        self.blackhole = False
        self.down = False
        self.connections = 0  # accepted, in all
        self.faults = 0  # commands that broke something
        self._pairs: set[_Pair] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._server: asyncio.Server | None = None
        self._clear = asyncio.Event()
        self._clear.set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, self.host, self.port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        await self._stop_listening(abort=True)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _stop_listening(self, abort: bool) -> None:
        """Stop accepting and close the open connections. They are closed before waiting:
        from Python 3.12.1 on, wait_closed() waits for every accepted connection too."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        self._close_all(abort)
        if server is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(server.wait_closed(), 5)

    # -- faults ------------------------------------------------------------------------

    def set_delay(self, seconds: float) -> None:
        self.delay_s = max(0.0, seconds)
        self.faults += seconds > 0

    def set_blackhole(self, on: bool) -> None:
        self.blackhole = on
        self.faults += on
        if on:
            self._clear.clear()
            return
        # Connections that arrived during the black hole never reached the CSMS, as a
        # lost SYN would not: reset them rather than replay a handshake given up on long ago.
        for pair in list(self._pairs):
            if pair.csms is None:
                self._pairs.discard(pair)
                _close(pair.station, abort=True)
        self._clear.set()

    async def set_down(self, on: bool) -> None:
        if on and not self.down:
            self.down = True
            self.faults += 1
            await self._stop_listening(abort=False)
        elif not on and self.down:
            self.down = False
            await self.start()

    def drop(self) -> None:
        self.faults += 1
        self._close_all(abort=False)

    def reset(self) -> None:
        self.faults += 1
        self._close_all(abort=True)

    async def heal(self) -> None:
        self.set_delay(0)
        self.set_blackhole(False)
        await self.set_down(False)

    def status(self) -> dict[str, Any]:
        return {
            "listen": f"{self.host}:{self.port}",
            "target": f"{self.target[0]}:{self.target[1]}",
            "delay_s": self.delay_s,
            "blackhole": self.blackhole,
            "down": self.down,
            "open": len(self._pairs),
            "connections": self.connections,
            "faults": self.faults,
        }

    def _close_all(self, abort: bool) -> None:
        for pair in list(self._pairs):
            for writer in (pair.station, pair.csms):
                if writer is not None:
                    _close(writer, abort)
        self._pairs.clear()

    # -- relaying ----------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)  # stop() cancels it with the rest
        try:
            await self._relay(reader, writer)
        finally:
            self._tasks.discard(task)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.down:  # accepted by the kernel just before the port closed
            _close(writer, abort=False)
            return
        self.connections += 1
        pair = _Pair(writer)
        self._pairs.add(pair)
        try:
            await self._clear.wait()  # a black-holed connect hangs, as an unanswered SYN would
            if pair not in self._pairs:  # reset when the black hole lifted, or dropped
                return
            csms_reader, pair.csms = await asyncio.open_connection(*self.target)
        except OSError:
            self._pairs.discard(pair)
            _close(writer, abort=True)
            return
        if pair not in self._pairs:  # dropped while connecting
            _close(pair.csms, abort=False)
            return
        self._spawn(self._pump(reader, pair.csms, pair))
        await self._pump(csms_reader, writer, pair)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, pair: _Pair) -> None:
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        sender = asyncio.ensure_future(self._send(queue, writer))
        loop = asyncio.get_running_loop()
        try:
            while chunk := await reader.read(CHUNK):
                queue.put_nowait((loop.time() + self.delay_s, chunk))
            queue.put_nowait((loop.time() + self.delay_s, b""))  # end of stream, after the data
            await sender
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            sender.cancel()
            if pair in self._pairs:
                self._pairs.discard(pair)
                for side in (pair.station, pair.csms):
                    if side is not None:
                        _close(side, abort=False)

    async def _send(self, queue: asyncio.Queue[tuple[float, bytes]], writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due, chunk = await queue.get()
            if due > loop.time():
                await asyncio.sleep(due - loop.time())
            await self._clear.wait()  # a black hole holds everything, the end of stream too
            if not chunk:
                return
            writer.write(chunk)
            await writer.drain()

    # -- control port ------------------------------------------------------------------

    async def command(self, line: str) -> dict[str, Any]:
        """One control command (see the module doc); the reply."""
        words = line.split()
        if not words:
            return {"ok": False, "error": "empty command"}
        name, args = words[0].lower(), words[1:]
        try:
            if name == "delay" and len(args) == 1:
                self.set_delay(float(args[0]))
            elif name == "blackhole" and args in (["on"], ["off"]):
                self.set_blackhole(args[0] == "on")
            elif name == "down" and args in (["on"], ["off"]):
                await self.set_down(args[0] == "on")
            elif name in ("drop", "reset", "heal", "status") and not args:
                if name == "drop":
                    self.drop()
                elif name == "reset":
                    self.reset()
                elif name == "heal":
                    await self.heal()
            else:
                return {
                    "ok": False,
                    "error": f"unknown command {line.strip()!r}; see python -m hil.proxy --help",
                }
        except (ValueError, OSError) as exc:
            return {"ok": False, "error": f"{line.strip()}: {exc}"}
        return {"ok": True, **self.status()}

    async def serve_control(self, host: str, port: int) -> asyncio.Server:
        async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while line := await reader.readline():
                    reply = await self.command(line.decode(errors="replace"))
                    writer.write(json.dumps(reply).encode() + b"\n")
                    await writer.drain()
            writer.close()

        return await asyncio.start_server(session, host, port, reuse_address=True)


def _close(writer: asyncio.StreamWriter, abort: bool) -> None:
    sock = writer.get_extra_info("socket")
    if abort and sock is not None:
        with contextlib.suppress(OSError):
            # Linger 0: close sends RST instead of FIN.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()
    else:
        writer.close()


class ProxyThread:
    """A ``FaultProxy`` on its own event loop thread, with blocking methods."""

    def __init__(self, target: tuple[str, int], host: str = "127.0.0.1", port: int = 0) -> None:
        self._target, self._host, self._port = target, host, port
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fault-proxy", daemon=True)
        self.proxy: FaultProxy

    def __enter__(self) -> ProxyThread:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def _run(self, coro: Coroutine[Any, Any, _T]) -> _T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(15)

    def start(self) -> None:
        self._thread.start()

        async def make() -> FaultProxy:
            proxy = FaultProxy(self._target, self._host, self._port)
            await proxy.start()
            return proxy

        self.proxy = self._run(make())

    def stop(self) -> None:
        if self._thread.is_alive():
            self._run(self.proxy.stop())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
            self._loop.close()

    @property
    def port(self) -> int:
        return self.proxy.port

    def url(self, path: str = "/ocpp", scheme: str = "ws") -> str:
        """The URL a station uses to reach the CSMS through the proxy."""
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def command(self, line: str) -> dict[str, Any]:
        return self._run(self.proxy.command(line))

    def retarget(self, host: str, port: int) -> None:
        """Send new connections to another address (a CSMS that came back elsewhere)."""
        self.proxy.target = (host, port)


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


async def _main(args: argparse.Namespace) -> None:
    proxy = FaultProxy(args.target, *args.listen)
    await proxy.start()
    print(f"relaying {proxy.host}:{proxy.port} -> {args.target[0]}:{args.target[1]}", flush=True)
    if args.control:
        await proxy.serve_control(*args.control)
        print(f"control on {args.control[0]}:{args.control[1]}", flush=True)
    await asyncio.Event().wait()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--listen", type=_address, required=True, help="HOST:PORT the station connects to")
    parser.add_argument("--target", type=_address, required=True, help="HOST:PORT of the CSMS")
    parser.add_argument("--control", type=_address, help="HOST:PORT for control commands")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
