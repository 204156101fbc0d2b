"""The channel between the OCPP process and the safety process: one JSON object per
datagram over a ``SOCK_SEQPACKET`` socket pair, each with its kind in ``"t"``.

The OCPP process sends permits, meter states, the hardware cap and unlock requests as
they change, the rig's OCPP status fields, and a heartbeat every ``HEARTBEAT_S`` from a
thread of its own. The safety process sends what its control loops see. Neither side
waits on the other: sends are non-blocking, and state (not events) is what flows, so a
send that would block is retried with the newest state.

If the OCPP process is silent for ``SILENCE_S`` (stopped, hung, starved) or its end
closes (it died), the safety process withdraws every permit: the contactor opens at the
next tick and the PWM stops offering.
"""

from __future__ import annotations

import json
import socket
from typing import Any

HEARTBEAT_S = 0.02
# Silence is timed from the last message, which came at most HEARTBEAT_S before the
# OCPP process stopped: the contactor opens within SILENCE_S of the stop, plus one tick's
# work (the loop is woken, not left to its period), inside the 100 ms budget.
SILENCE_S = 0.06
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
