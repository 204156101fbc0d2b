"""A small OCPP central system (CSMS) for development, demos and end-to-end tests.

    python -m hil.csms [--host 127.0.0.1] [--port 9000] [--boot-status Accepted] [--heartbeat 300]
                       [--version 1.6|2.0.1|auto ...]
                       [--tls-cert PEM [--tls-key PEM] [--tls-ca PEM] [--plain-too]]

Stations connect to ``ws://host:port/<anything>/<station id>`` with the ``ocpp1.6`` or
``ocpp2.0.1`` subprotocol (whichever of them the CSMS accepts; 1.6 alone by default),
or to ``wss://`` when it has a TLS certificate (``ssl_context``; with ``plain_too`` the same
port takes both).
The CSMS answers every station-initiated OCPP 1.6 and 2.0.1 message from its settings,
keeps a timeline of every frame in both directions (printed one line each unless
``quiet``) and lets a test send any CALL to a station and wait for messages.

Built on the ``ocpp`` package: its ``ChargePoint`` routes incoming CALLs to the ``@on``
handlers of ``ocpp16`` and ``ocpp201``, and every payload, received or sent, is checked against
the official JSON schemas. ``DevCsms`` is the asyncio API; ``CsmsThread`` runs one on its own event
loop in a daemon thread and offers the same operations as blocking calls.

The package, one job a module: ``timeline`` (the recorded entries), ``lines`` (one line per
entry), ``answering``, ``ocpp16`` and ``ocpp201`` (the CSMS-side handlers), ``versions``,
``session`` (one connected station), ``server`` (``DevCsms``), ``tls`` (the TLS front),
``thread`` (``CsmsThread``) and ``cli`` (the command line).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hil.csms.cli import main
    from hil.csms.lines import describe
    from hil.csms.server import DevCsms
    from hil.csms.session import CallErrorReply, StationSession
    from hil.csms.thread import CsmsThread
    from hil.csms.timeline import Entry

__all__ = ["CallErrorReply", "CsmsThread", "DevCsms", "Entry", "StationSession", "describe", "main"]

# The module of each name, imported on first use: ``python -m hil.csms`` then gets to handle
# signals (``__main__``) before the slow imports of the CSMS itself (websockets, ocpp).
_HOMES = {
    "CallErrorReply": "session",
    "CsmsThread": "thread",
    "DevCsms": "server",
    "Entry": "timeline",
    "StationSession": "session",
    "describe": "lines",
    "main": "cli",
}


def __getattr__(name: str) -> object:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value
