"""The rig socket in the safety process: newline-delimited JSON over a Unix socket, on
a ``selectors`` loop, so a rig command moves the simulated EV at once and ``status``
shows the physical state at once, whatever the OCPP process is doing.

A client that sends a malformed or over-long line gets an error reply and stays
connected; one that stops reading its replies is dropped rather than let it hold up the
loop. A stale socket left by a killed daemon is replaced; one a daemon still listens on
is an error (two daemons must not drive one station). A safety process whose OCPP
process died stops listening at once, once its hardware is safe, and answers the
clients it has a little longer: the next daemon can start at once, and a bench that was
polling sees the contactor open.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import selectors
import socket
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from drivers.sim_rig import MAX_LINE, RigError

log = logging.getLogger(__name__)

MAX_PENDING = 1024 * 1024  # replies a client has not read: beyond this it is dropped
GONE_WAIT_S = 1.0  # a listener found alive may be a safety process about to stop listening

Reply = Callable[[bytes], dict[str, Any]]


class _Client:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.inbox = b""
        self.outbox = bytearray()
        self.discarding = False  # inside a line longer than MAX_LINE
        self.dropped = False


class RigServer(threading.Thread):
    """The rig socket on a thread of its own: a burst of rig requests costs the safety
    process's main thread (the channel and its deadlines) at most a GIL switch."""

    def __init__(self, path: Path, reply: Reply) -> None:
        super().__init__(name="rig", daemon=True)
        self.path = path
        self.reply = reply
        self.selector = selectors.DefaultSelector()
        self.clients: dict[int, _Client] = {}
        self.listener = listen(path)
        self.listener.setblocking(False)
        self.listening = True
        self.selector.register(self.listener, selectors.EVENT_READ, self._accept)
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self.selector.register(self._wake_r, selectors.EVENT_READ, self._woken)
        self._requests: set[str] = set()  # "stop listening", "close": from other threads

    def run(self) -> None:
        # Not at the safety loops' real-time priority: a client streaming requests must not
        # take a core from everything else.
        with contextlib.suppress(OSError, AttributeError):
            os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
        try:
            while "close" not in self._requests:
                for key, events in self.selector.select(0.5):
                    key.data(events)
                if "stop listening" in self._requests:
                    self._stop_listening()
        except Exception:
            log.exception("rig socket failed; it answers no more")
        finally:
            self._stop_listening()
            for client in list(self.clients.values()):
                self._drop(client, flush=True)

    def stop_listening(self) -> None:
        """No new clients; the path is free for the next daemon. Clients stay served."""
        self._request("stop listening")

    def close(self, timeout: float = 0.5) -> None:
        self._request("close")
        if self.is_alive():
            self.join(timeout)
        elif self.listening:  # never started
            self._stop_listening()

    def _request(self, what: str) -> None:
        self._requests.add(what)
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"w")

    def _woken(self, _events: int) -> None:
        with contextlib.suppress(BlockingIOError):
            os.read(self._wake_r, 4096)

    def _stop_listening(self) -> None:
        if self.listening:
            self.listening = False
            with contextlib.suppress(OSError):  # first: a successor finds no path, not a dead one
                self.path.unlink()
            with contextlib.suppress(KeyError, ValueError):
                self.selector.unregister(self.listener)
            self.listener.close()

    def _accept(self, _events: int) -> None:
        with contextlib.suppress(BlockingIOError, InterruptedError):
            while True:
                sock, _ = self.listener.accept()
                sock.setblocking(False)
                client = _Client(sock)
                self.clients[sock.fileno()] = client
                self.selector.register(sock, selectors.EVENT_READ, lambda ev, c=client: self._ready(c, ev))

    def _ready(self, client: _Client, events: int) -> None:
        if events & selectors.EVENT_READ:
            try:
                data = client.sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                data = None
            except OSError:
                data = b""
            if data == b"":
                self._drop(client, flush=True)
                return
            if data:
                self._received(client, data)
        if not client.dropped and (events & selectors.EVENT_WRITE or client.outbox):
            self._flush(client)

    def _received(self, client: _Client, data: bytes) -> None:
        if client.discarding:  # the rest of an over-long line: dropped up to its end
            _, newline, data = data.partition(b"\n")
            if not newline:
                return
            client.discarding = False
        client.inbox += data
        while not client.dropped:
            line, newline, rest = client.inbox.partition(b"\n")
            if not newline:
                if len(client.inbox) > MAX_LINE:
                    client.inbox, client.discarding = b"", True
                    self._queue(client, {"ok": False, "error": f"line longer than {MAX_LINE} bytes"})
                return
            client.inbox = rest
            if len(line) > MAX_LINE:
                self._queue(client, {"ok": False, "error": f"line longer than {MAX_LINE} bytes"})
            elif line.strip():
                self._queue(client, self.reply(line))

    def _queue(self, client: _Client, reply: dict[str, Any]) -> None:
        client.outbox += json.dumps(reply).encode() + b"\n"
        if len(client.outbox) > MAX_PENDING:
            log.warning("rig client does not read its replies; dropped")
            self._drop(client)

    def _flush(self, client: _Client) -> None:
        try:
            sent = client.sock.send(client.outbox)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self._drop(client)
            return
        del client.outbox[:sent]
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if client.outbox else 0)
        with contextlib.suppress(KeyError, ValueError):
            self.selector.modify(client.sock, events, lambda ev, c=client: self._ready(c, ev))

    def _drop(self, client: _Client, flush: bool = False) -> None:
        if client.dropped:
            return
        client.dropped = True
        if flush and client.outbox:
            with contextlib.suppress(OSError):
                client.sock.send(client.outbox)
        self.clients.pop(client.sock.fileno(), None)
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(client.sock)
        client.sock.close()


def listen(path: Path) -> socket.socket:
    """Listen on ``path``, replacing a stale socket a killed daemon left behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + GONE_WAIT_S
    while _alive(path):
        if time.monotonic() > deadline:
            raise RigError(f"another daemon is already listening on {path}")
        time.sleep(0.05)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(path))
        os.chmod(path, 0o660)
        sock.listen(16)
    except OSError:
        sock.close()
        raise
    return sock


def _alive(path: Path) -> bool:
    """Whether a process listens on ``path``; a stale socket file is removed."""
    try:
        if not stat.S_ISSOCK(path.lstat().st_mode):
            return False
    except FileNotFoundError:
        return False
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(0.2)  # a listener with a full backlog blocks a connect
    try:
        probe.connect(str(path))
    except ConnectionRefusedError:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # nobody listens: left by a killed daemon
        return False
    except FileNotFoundError:
        return False
    except OSError:
        return True  # a full backlog, no permission: someone may listen; never remove it
    finally:
        probe.close()
    return True
