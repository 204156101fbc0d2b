"""TLS for the development CSMS: a front that does the handshake on memory buffers and relays
the bytes to the plain websocket server inside."""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import ssl
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from hil.csms.server import DevCsms

# A TLS connection starts with a handshake record; a plain one with "GET".
_TLS_HANDSHAKE = 0x16
_OPEN_TIMEOUT = 10.0  # s: for the first bytes and the TLS handshake
_CLOSE_TIMEOUT = 5.0  # s: for the other direction once one has ended
_CHUNK = 65536


class TlsFront:
    """The listening socket of a TLS CSMS: does the TLS handshake (or, with ``plain_too``, lets a
    plain connection through as is) and relays the bytes to the plain websocket server inside.

    The TLS runs on memory buffers rather than in an asyncio TLS transport, which drops the
    alert of a failed handshake (the peer would see a bare reset instead of e.g. "protocol
    version") and does not tell the server why a handshake failed.
    """

    def __init__(self, csms: DevCsms, context: ssl.SSLContext, plain_too: bool, inner_port: int) -> None:
        self._csms = csms
        self._context = context
        self._plain_too = plain_too
        self._inner_port = inner_port
        self._listener: socket.socket | None = None
        self._accepting: asyncio.Task[None] | None = None
        self._opening: set[asyncio.Task[None]] = set()  # connections before their relay runs
        self._tasks: set[asyncio.Task[None]] = set()
        self._tls: dict[int, dict[str, Any]] = {}  # relay's port on the inside -> TLS details

    async def start(self, host: str, port: int) -> int:
        """Listen on ``host``:``port``; return the port (the actual one for port 0)."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._listener = socket.create_server((host, port), family=family)
        self._listener.setblocking(False)
        self._accepting = asyncio.create_task(self._accept(self._listener))
        return int(self._listener.getsockname()[1])

    def close(self) -> None:
        """Stop accepting and drop the connections not relayed yet."""
        if self._accepting is not None:
            self._accepting.cancel()
        if self._listener is not None:
            self._listener.close()
        for task in self._opening:
            task.cancel()

    async def wait_closed(self, timeout: float = _CLOSE_TIMEOUT) -> None:
        """Wait for the relays to end (the server inside closes its side), then cut what is left."""
        if self._accepting is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._accepting
        if self._tasks:
            _, left = await asyncio.wait(self._tasks, timeout=timeout)
            for task in left:
                task.cancel()
            await asyncio.gather(*left, return_exceptions=True)

    def tls_of(self, inner_port: int) -> dict[str, Any] | None:
        """The TLS details of the connection relayed from this port, or None (a plain one)."""
        return self._tls.get(inner_port)

    async def _accept(self, listener: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            sock, peer = await loop.sock_accept(listener)
            task = asyncio.create_task(self._connection(sock, _address(peer)))
            for tasks in (self._opening, self._tasks):
                tasks.add(task)
                task.add_done_callback(tasks.discard)

    async def _connection(self, sock: socket.socket, peer: str) -> None:
        loop = asyncio.get_running_loop()
        inner = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        inner.setblocking(False)
        try:
            outside = await self._open_outside(sock, peer)
            if outside is None:
                return
            await loop.sock_connect(inner, ("127.0.0.1", self._inner_port))
            inner_port = int(inner.getsockname()[1])
            if outside.tls is not None:
                self._tls[inner_port] = _tls_details(outside.tls)
            task = asyncio.current_task()
            if task is not None:
                self._opening.discard(task)
            try:
                await _relay(outside, _Side(inner))
            finally:
                self._tls.pop(inner_port, None)
        finally:
            sock.close()
            inner.close()

    async def _open_outside(self, sock: socket.socket, peer: str) -> _Side | None:
        """The station's side, after the TLS handshake unless it is a plain connection; None if
        the station sent nothing or the handshake failed."""
        loop = asyncio.get_running_loop()
        tls = not self._plain_too
        try:
            async with asyncio.timeout(_OPEN_TIMEOUT):
                first = await loop.sock_recv(sock, _CHUNK)
                if not first:
                    return None
                tls = not self._plain_too or first[0] == _TLS_HANDSHAKE
                side = _Side(sock, self._context if tls else None, first)
                if tls:
                    await side.handshake()
                return side
        except (OSError, TimeoutError) as exc:  # ssl.SSLError is an OSError
            if tls:
                error, reason = _handshake_error(exc)
                self._csms._record("", "in", "refused", "", {"error": error, "reason": reason, "peer": peer})
            return None


class _Side:
    """One end of a relayed connection: a socket, with TLS (on memory buffers) or without.

    ``received`` is what was read from the socket already (the first bytes of a connection).
    """

    def __init__(
        self, sock: socket.socket, context: ssl.SSLContext | None = None, received: bytes = b""
    ) -> None:
        self._sock = sock
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self.tls = (
            None if context is None else context.wrap_bio(self._incoming, self._outgoing, server_side=True)
        )
        self._early = received
        if self.tls is not None:
            self._incoming.write(received)
            self._early = b""
        self._sending = asyncio.Lock()

    async def handshake(self) -> None:
        """Do the TLS handshake; a failure raises its ``ssl.SSLError`` after sending the alert to the peer."""
        assert self.tls is not None
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                await self._send_pending()
                await self._receive()
            except ssl.SSLError:
                with contextlib.suppress(OSError):
                    await self._send_pending()
                raise
        await self._send_pending()

    async def read(self) -> bytes:
        """The next bytes received (decrypted), b"" at the end."""
        if self.tls is None:
            early, self._early = self._early, b""
            return early or await asyncio.get_running_loop().sock_recv(self._sock, _CHUNK)
        while True:
            try:
                return self.tls.read(_CHUNK)
            except ssl.SSLWantReadError:
                await self._send_pending()  # TLS 1.3 may answer, e.g. a key update
                await self._receive()
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                return b""

    async def write(self, data: bytes) -> None:
        if self.tls is None:
            await asyncio.get_running_loop().sock_sendall(self._sock, data)
        else:
            self.tls.write(data)
            await self._send_pending()

    async def end(self) -> None:
        """Stop sending (TLS: a close_notify) and go on receiving."""
        if self.tls is None:
            self._sock.shutdown(socket.SHUT_WR)
            return
        with contextlib.suppress(ssl.SSLError):  # it wants to read the peer's close_notify: no need
            self.tls.unwrap()
        await self._send_pending()

    async def _receive(self) -> None:
        data = await asyncio.get_running_loop().sock_recv(self._sock, _CHUNK)
        if data:
            self._incoming.write(data)
        else:
            self._incoming.write_eof()

    async def _send_pending(self) -> None:
        # The lock keeps the records in order when both directions of a relay produce some.
        async with self._sending:
            data = self._outgoing.read()
            if data:
                await asyncio.get_running_loop().sock_sendall(self._sock, data)


async def _pump(source: _Side, sink: _Side) -> None:
    while data := await source.read():
        await sink.write(data)
    await sink.end()


async def _relay(a: _Side, b: _Side) -> None:
    """Copy bytes both ways until both directions have ended (the second within a timeout of
    the first) or one fails."""
    pumps = {asyncio.create_task(_pump(a, b)), asyncio.create_task(_pump(b, a))}
    try:
        done, _ = await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        if all(task.exception() is None for task in done):
            await asyncio.wait(pumps, timeout=_CLOSE_TIMEOUT)
    finally:
        for task in pumps:
            task.cancel()
        await asyncio.gather(*pumps, return_exceptions=True)


def _address(peer: Any) -> str:
    host, port = peer[0], peer[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _tls_details(tls: ssl.SSLObject) -> dict[str, Any]:
    cert = tls.getpeercert()
    rdns = cast(tuple[tuple[tuple[str, str], ...], ...], cert.get("subject", ()) if cert else ())
    subject = {key: value for rdn in rdns for key, value in rdn} if cert else None
    return {"version": tls.version(), "client_cert": subject}


def _handshake_error(exc: BaseException) -> tuple[str, str]:
    """``(OpenSSL reason or exception class, message)`` of a failed TLS handshake."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return str(exc.reason or "CERTIFICATE_VERIFY_FAILED"), str(exc.verify_message)
    if isinstance(exc, ssl.SSLError) and exc.reason:
        # "[SSL: UNSUPPORTED_PROTOCOL] unsupported protocol (_ssl.c:1006)" -> "unsupported protocol"
        return str(exc.reason), re.sub(r"^\[SSL: \w+\] | \(_ssl\.c:\d+\)$", "", str(exc.strerror or exc))
    if isinstance(exc, TimeoutError):
        return "TimeoutError", f"no TLS handshake within {_OPEN_TIMEOUT:g} s"
    return type(exc).__name__, str(exc) or "the connection ended during the TLS handshake"
