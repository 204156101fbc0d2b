"""Pick and build the OCPP adapter the config asks for.

One link to the CSMS; behind it the adapter of each version the station may speak. With
``ocpp.version = "auto"`` both subprotocols are offered and the CSMS's pick decides which
adapter answers. Transaction messages are queued in the format of the version spoken
last (remembered across restarts); if the CSMS then picks the other version, the queued
messages of the old one are dropped with a warning (the transactions stay on record).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from controller.link import Endpoint, Link
from controller.ocppj import Call
from controller.storage import StorageError

if TYPE_CHECKING:
    from controller.daemon import Daemon

log = logging.getLogger(__name__)

SPOKEN_SETTING = "ocpp.version_spoken"
OUTBOX_KINDS = {"1.6": ("start", "meter", "stop"), "2.0.1": ("event",)}


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


class OcppClient:
    """The daemon's view of OCPP: the link and the adapter of the version spoken."""

    def __init__(self, host: Daemon, endpoint: Endpoint, settings: dict[str, str]) -> None:
        self.host = host
        self.link = Link(endpoint, self._handle, self._opened, self._closed, host.frames)
        self.adapters: dict[str, Any] = {}
        for version in endpoint.versions:
            if version == "1.6":
                from controller.ocpp16 import Ocpp16

                stored = {k[7:]: v for k, v in settings.items() if k.startswith("ocpp16.")}
                self.adapters[version] = Ocpp16(host, self.link, stored)
            else:
                from controller.ocpp201 import Ocpp201

                self.adapters[version] = Ocpp201(host, self.link, settings)
        spoken = settings.get(SPOKEN_SETTING)
        self.version = spoken if spoken in self.adapters else endpoint.versions[0]
        self.current.apply_keys()
        foreign = tuple(k for v, kinds in OUTBOX_KINDS.items() if v != self.version for k in kinds)
        try:
            dropped = host.database.storage.drop_outbox(foreign)
        except StorageError as exc:
            log.error("cannot check the outbox for messages of another OCPP version: %s", exc)
            dropped = 0
        if dropped:
            log.warning(
                "%d queued transaction message(s) of another OCPP version dropped (ocpp.version "
                "changed; the transactions stay in the station's records)",
                dropped,
            )

    @property
    def current(self) -> Any:
        return self.adapters[self.version]

    @property
    def online(self) -> bool:
        return bool(self.current.online)

    @property
    def queues_records(self) -> bool:
        """Whether the daemon queues 1.6 start/meter/stop bodies with its records."""
        return self.version == "1.6"

    async def run(self) -> None:
        await self.link.run()

    async def close(self) -> None:
        self.current._closed()
        await self.link.close()

    async def _handle(self, call: Call) -> Any:
        return await self.current._handle(call)

    async def _opened(self, version: str) -> None:
        if version != self.version:
            await self._switch(version)
        await self.current._opened(version)

    def _closed(self) -> None:
        self.current._closed()

    async def _switch(self, version: str) -> None:
        old, self.version = self.version, version
        log.warning("the CSMS speaks OCPP %s (last time %s)", version, old)
        self.host.save_setting(SPOKEN_SETTING, version)
        database = self.host.database
        try:
            dropped = await database.run(database.storage.drop_outbox, OUTBOX_KINDS[old])
        except StorageError as exc:
            log.error("queued OCPP %s messages not dropped now: %s", old, exc)
            dropped = 0
        if dropped:
            log.warning(
                "%d queued OCPP %s transaction message(s) dropped: the CSMS now speaks %s "
                "(the transactions stay in the station's records)",
                dropped,
                old,
                version,
            )
        self.current.apply_keys()
        if version == "2.0.1":
            try:
                await self.current.recover()
            except StorageError as exc:
                log.error("cannot look for interrupted OCPP 2.0.1 transactions now: %s", exc)

    # -- what the daemon tells the adapter ---------------------------------------------

    def status_changed(self) -> None:
        self.current.status_changed()

    def outbox_changed(self) -> None:
        self.current.outbox_changed()

    def auth_settings(self) -> Any:
        return self.current.auth_settings()

    async def authorize(self, token: str) -> Any:
        return await self.current.authorize(token)

    async def meter_values_now(self, evse_id: int, context: str) -> None:
        await self.current.meter_values_now(evse_id, context)

    async def firmware_status_notification(self, status: str) -> None:
        await self.current.firmware_status_notification(status)

    def station_changed(self, actions: list[Any]) -> None:
        """After each batch of station actions (2.0.1 derives its transaction events here)."""
        observe = getattr(self.current, "station_changed", None)
        if observe is not None:
            try:
                observe(actions)
            except Exception:  # a bug here must not take the control of the station with it
                log.exception("OCPP %s could not follow the station's actions", self.version)

    async def recover(self) -> None:
        """After the meters were read at start: end the interrupted 2.0.1 transactions."""
        if self.version == "2.0.1":
            await self.current.recover()

    def tick(self) -> None:
        tick = getattr(self.current, "tick", None)
        if tick is not None:
            try:
                tick()
            except Exception:
                log.exception("OCPP %s periodic work failed", self.version)

    async def drain(self, timeout: float) -> None:
        await self.current.drain(timeout)

    def reported_status(self, status: str) -> str:
        """A 1.6 connector status in the words of the version spoken."""
        return str(self.current.reported_status(status))


def make_client(daemon: Daemon, settings: dict[str, str]) -> OcppClient:
    ocpp = daemon.config.ocpp
    assert ocpp is not None
    versions = {"1.6": ("1.6",), "2.0.1": ("2.0.1",), "auto": ("2.0.1", "1.6")}[ocpp["version"]]
    from controller.device_model import storage_key

    key201 = "ocpp201." + storage_key(("OCPPCommCtrlr", None, None, None, "WebSocketPingInterval", None))
    stored = settings.get("ocpp16.WebSocketPingInterval" if versions[0] == "1.6" else key201, "30")
    try:
        ping = float(stored)
    except ValueError:
        ping = 30.0
    return OcppClient(daemon, endpoint(daemon, versions, ping), settings)
