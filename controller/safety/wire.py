"""The channel between the OCPP process and the safety process: one JSON object per
datagram over a ``SOCK_SEQPACKET`` socket pair, each with its kind in ``"t"``.

The OCPP process sends permits, meter states, the hardware cap and unlock requests as
they change, the rig's OCPP status fields, and a heartbeat every ``HEARTBEAT_S`` from a
thread of its own. The safety process sends what its control loops see. Neither side
waits on the other: sends are non-blocking, and state (not events) is what flows, so a
send that would block is retried with the newest state.

The safety process withdraws every permit at once when the OCPP process dies (its end
closes), is stopped (SIGSTOP or a debugger: the kernel's process state, looked at every
40 ms) or is silent for ``SILENCE_S`` (hung, starved). Once it runs and is heard again,
the safety process asks for its current permits ("resync"), and control comes back only
with them ("synced"): a permit from before the silence is never reused.
"""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Callable
from typing import Any

HEARTBEAT_S = 0.2  # 2.5 beats per silence window; each costs the OCPP process ~0.2 ms here
# A stopped process is seen from its state within 40 ms; silence is for a process that
# runs but cannot speak (a GIL held for long, starved), which a flood at a quarter core
# can look like for tens of milliseconds: so it is judged over half a second.
SILENCE_S = 0.5
MAX_DATAGRAM = 64 * 1024

Message = dict[str, Any]
HEARTBEAT = b'{"t":"hb"}'  # compared as bytes: the commonest datagram is never parsed


def encode(kind: str, **fields: Any) -> bytes:
    return json.dumps({"t": kind, **fields}, separators=(",", ":")).encode()


def decode(datagram: bytes) -> Message | None:
    """The message, or None for a datagram that is not one (logged by the caller)."""
    try:
        message = json.loads(datagram)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(message, dict) or not isinstance(message.get("t"), str):
        return None
    return message


def pair() -> tuple[socket.socket, socket.socket]:
    """(the OCPP process's end, the safety process's end)."""
    ocpp_end, safety_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    return ocpp_end, safety_end


def send(sock: socket.socket, datagram: bytes) -> bool:
    """Send without waiting; False when the buffer is full (the caller sends newer state later)."""
    try:
        sock.send(datagram, socket.MSG_DONTWAIT)
    except BlockingIOError:
        return False
    return True


def drain(sock: socket.socket) -> tuple[list[bytes], bool]:
    """Every datagram waiting, without blocking, and whether the other end has closed."""
    datagrams: list[bytes] = []
    while True:
        try:
            datagram = sock.recv(MAX_DATAGRAM)
        except (BlockingIOError, InterruptedError):
            return datagrams, False
        except OSError:
            return datagrams, True
        if not datagram:
            return datagrams, True
        datagrams.append(datagram)


def dispatch(datagram: bytes, handle: Callable[[Message], None], log: logging.Logger) -> None:
    """Hand one datagram to ``handle``; one that is not a message, or not a good one, is
    logged and dropped: nothing on the channel ends a process."""
    message = decode(datagram)
    if message is None:
        log.error("safety channel: unreadable message %r", datagram[:100])
        return
    try:
        handle(message)
    except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
        log.error("safety channel: bad %s message: %r", message.get("t"), exc)
