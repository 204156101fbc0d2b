"""Pick and build the OCPP adapter the config asks for."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from controller.link import Endpoint

if TYPE_CHECKING:
    from controller.daemon import Daemon

log = logging.getLogger(__name__)


def endpoint(daemon: Daemon, versions: tuple[str, ...], ping_interval_s: float | None) -> Endpoint:
    ocpp = daemon.config.ocpp
    assert ocpp is not None
    station_id = daemon.config.station["id"]
    password = ocpp.get("password") or "" if ocpp.get("security_profile", 0) in (1, 2) else ""
    return Endpoint(
        url=f"{ocpp['url'].rstrip('/')}/{station_id}",
        station_id=station_id,
        versions=versions,
        password=password,
        ping_interval_s=ping_interval_s or None,
    )


def make_client(daemon: Daemon, stored_keys: dict[str, str]) -> Any:
    from controller.daemon import StartupError
    from controller.ocpp16 import Ocpp16

    ocpp = daemon.config.ocpp
    assert ocpp is not None
    if ocpp["version"] == "2.0.1":
        raise StartupError('ocpp.version "2.0.1" is not available yet in this release: use "1.6"')
    if ocpp["version"] == "auto":
        log.warning('ocpp.version "auto": this release speaks OCPP 1.6 only; offering ocpp1.6')
    ping = float(stored_keys.get("WebSocketPingInterval", "30"))
    return Ocpp16(daemon, endpoint(daemon, ("1.6",), ping), stored_keys)
