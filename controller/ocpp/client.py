"""Pick and build the OCPP adapter the config asks for.

One link to the CSMS; behind it the adapter of each version the station may speak. With
``ocpp.version = "auto"`` both subprotocols are offered and the CSMS's pick decides which
adapter answers. Transaction messages are queued in the format of the version spoken
last (remembered across restarts); if the CSMS then picks the other version, the queued
messages of the old one are dropped with a warning (the transactions stay on record).
A station that has never connected has no version spoken last: it queues in both
formats, and its first connection keeps the version the CSMS picks, without a warning.
"""

from __future__ import annotations

import json
import logging
import time
from typing import TYPE_CHECKING, Any

from websockets.exceptions import InvalidStatus

from controller.io.link import Endpoint, Link, SetupError
from controller.io.storage import StorageError
from controller.ocpp import connection
from controller.ocpp.connection import Chooser, Target
from controller.ocpp.host import Host, VersionAdapter
from controller.ocpp.ocppj import Call
from controller.security import tls

if TYPE_CHECKING:
    from controller.core import authorization as auth
    from controller.core.station import Action, ConnectorStatus
    from controller.io.link import Reply
    from controller.ocpp.v201.adapter import Ocpp201

log = logging.getLogger(__name__)

SPOKEN_SETTING = "ocpp.version_spoken"
OUTBOX_KINDS = {"1.6": ("start", "meter", "stop"), "2.0.1": ("event",)}
NETWORK_PREFIX = "ocpp201.network."
TRIAL_ATTEMPTS_16 = 3  # failed connections with a raised 1.6 profile before falling back
INVALID_MESSAGES_EVERY_S = 60.0  # at most one InvalidMessages security event per minute


def endpoint(host: Host, versions: tuple[str, ...], ping_interval_s: float | None) -> Endpoint:
    ocpp = host.config.ocpp
    assert ocpp is not None
    station_id = host.config.station["id"]
    password = ocpp.get("password") or "" if ocpp.get("security_profile", 0) in (1, 2) else ""
    return Endpoint(
        url=f"{ocpp['url'].rstrip('/')}/{station_id}",
        station_id=station_id,
        versions=versions,
        password=password,
        ping_interval_s=ping_interval_s or None,
    )


class OcppClient:
    """The station's view of OCPP: the link and the adapter of the version spoken.

    Implements ``controller.ocpp.host.OcppSide`` for the station and ``Connection`` for
    the adapters."""

    def __init__(self, host: Host, endpoint: Endpoint, settings: dict[str, str]) -> None:
        self.host = host
        self.settings = {
            k: v
            for k, v in settings.items()
            if k in (connection.FLOOR_SETTING, connection.TRIAL_SETTING) or k.startswith(NETWORK_PREFIX)
        }
        self.link = Link(endpoint, self._handle, self._opened, self._closed, host.frames)
        self.link.backoff = lambda attempt: self.current.backoff(attempt)
        self.link.choose = self._choose
        self.link.on_failure = self._failed
        self.link.on_invalid = self._invalid
        self._failure_event: str | None = None
        self._invalid_at = float("-inf")
        self.target: Target | None = None
        self.adapters: dict[str, VersionAdapter] = {}
        self.v201: Ocpp201 | None = None  # its device model steers the network slots
        for version in endpoint.versions:
            if version == "1.6":
                from controller.ocpp.v16.adapter import Ocpp16

                stored = {k[7:]: v for k, v in settings.items() if k.startswith("ocpp16.")}
                self.adapters[version] = Ocpp16(host, self.link, stored)
            else:
                from controller.ocpp.v201.adapter import Ocpp201

                self.adapters[version] = self.v201 = Ocpp201(host, self.link, settings)
        spoken = self.spoken = settings.get(SPOKEN_SETTING)
        self.version = spoken if spoken in self.adapters else endpoint.versions[0]
        # "auto" before the first connection: no version spoken yet, both are queued.
        self.undecided = len(self.adapters) > 1 and spoken not in self.adapters
        for adapter in self.adapters.values():
            adapter.security_profile_changed(self.security_profile)
        self.current.apply_keys()
        self.chooser = Chooser([], 1)
        self.plan()
        if self.undecided:
            return
        foreign = tuple(k for v, kinds in OUTBOX_KINDS.items() if v != self.version for k in kinds)
        try:
            dropped = host.records.drop_outbox_at_start(foreign)
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
    def current(self) -> VersionAdapter:
        return self.adapters[self.version]

    @property
    def online(self) -> bool:
        return self.current.online

    @property
    def connected_version(self) -> str | None:
        return self.link.version if self.link.connected else None

    def apply_keys(self) -> None:
        """The adapter's keys steer the station again (after a reload changed the config)."""
        self.current.apply_keys()

    @property
    def queues_records(self) -> bool:
        """Whether the daemon queues 1.6 start/meter/stop bodies with its records."""
        return self.version == "1.6" or self.undecided

    async def run(self) -> None:
        await self.link.run()

    async def close(self) -> None:
        self.current.closed()
        await self.link.close()

    async def _handle(self, call: Call) -> Reply:
        return await self.current.handle(call)

    async def _opened(self, version: str) -> None:
        self._connected()
        if self.undecided:
            await self._first(version)
        elif version != self.version:
            await self._switch(version)
        if self.spoken != version:
            self.spoken = version
            self.host.save_setting(SPOKEN_SETTING, version)
        await self.current.opened(version)

    def _closed(self) -> None:
        self.current.closed()

    async def _first(self, version: str) -> None:
        """The first connection ever: keep the version picked; what was queued for the other goes."""
        old, self.version, self.undecided = self.version, version, False
        log.info("first connection: the CSMS speaks OCPP %s", version)
        other = tuple(k for v, kinds in OUTBOX_KINDS.items() if v != version for k in kinds)
        try:
            await self.host.records.drop_outbox(other)
        except StorageError as exc:
            log.error("queued messages of the other OCPP version not dropped now: %s", exc)
        if version != old:
            self.current.apply_keys()

    async def _switch(self, version: str) -> None:
        old, self.version = self.version, version
        log.warning("the CSMS speaks OCPP %s (last time %s)", version, old)
        self.current.booted_at = None  # a new version is a new registration: boot again
        try:
            dropped = await self.host.records.drop_outbox(OUTBOX_KINDS[old])
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

    # -- where to connect, and how ----------------------------------------------------

    @property
    def config_profile(self) -> int:
        ocpp = self.host.config.ocpp
        assert ocpp is not None
        return int(ocpp.get("security_profile", 0))

    @property
    def security_profile(self) -> int:
        """The lowest profile the station may connect with (raised by the CSMS)."""
        return connection.floor(self.config_profile, self.settings.get(connection.FLOOR_SETTING))

    def save(self, key: str, value: str) -> None:
        self.settings[key] = value
        self.host.save_setting(key, value)

    def plan(self) -> None:
        """Work out the targets to try, in order (after a change of profile or slots)."""
        ocpp = self.host.config.ocpp
        assert ocpp is not None
        url, floor = ocpp["url"], self.security_profile
        if self.version == "1.6":
            trial = connection.trial_profile(self.settings.get(connection.TRIAL_SETTING), floor)
            targets = connection.targets_16(url, self.config_profile, floor, trial)
            attempts = TRIAL_ATTEMPTS_16
        else:
            slots: dict[int, dict[str, Any]] = {}
            for key, value in self.settings.items():
                if key.startswith(NETWORK_PREFIX) and value:
                    try:
                        slots[int(key[len(NETWORK_PREFIX) :])] = json.loads(value)
                    except ValueError:
                        log.error("network profile %s unreadable; ignored", key)
            assert self.v201 is not None
            model = self.v201.model
            priority = model.items("OCPPCommCtrlr", "NetworkConfigurationPriority")
            targets = connection.targets_201(url, self.config_profile, floor, slots, priority)
            attempts = int(model.number("OCPPCommCtrlr", "NetworkProfileConnectionAttempts"))
        self.chooser = Chooser(targets, attempts)

    def _choose(self) -> Endpoint:
        target = self.target = self.chooser.current
        host, base = self.host, self.link.endpoint
        station_id = host.config.station["id"]
        context = None
        if target.profile >= 2:
            client = None
            if target.profile == 3:
                client = host.client_certificate()
                if client is None:
                    raise SetupError("security profile 3 needs a client certificate: none is installed")
            try:
                context = tls.client_context(host.certs.roots_pem("CSMSRootCertificate"), client)
            except tls.TlsSetupError as exc:
                raise SetupError(str(exc)) from exc
        return Endpoint(
            url=f"{target.url}/{station_id}",
            station_id=station_id,
            versions=base.versions,
            password=host.credentials.password() if target.profile in (1, 2) else "",
            ssl_context=context,
            ping_interval_s=base.ping_interval_s,
        )

    def _failed(self, exc: BaseException) -> None:
        if isinstance(exc, InvalidStatus) and exc.response.status_code == 401 and self.link.endpoint.password:
            self.host.credentials.refused()
        context = self.link.endpoint.ssl_context
        event = tls.failure_event(exc, context)
        if event is None and self.link.lost_with is not None:
            event = tls.failure_event(self.link.lost_with, context)
        if event is not None and event[0] != self._failure_event:
            self._failure_event = event[0]  # once per kind until a connection succeeds
            self.host.security_event(*event)
        given_up = self.chooser.failed()
        if given_up is None:
            return
        if given_up.trial and self.version == "1.6":
            log.error(
                "cannot connect with security profile %d: back to profile %d",
                given_up.profile,
                self.security_profile,
            )
            self.save(connection.TRIAL_SETTING, "")
            self.current.security_profile_changed(self.security_profile)
            self.plan()
        log.error("cannot connect to %s; trying %s", given_up.describe(), self.chooser.current.describe())

    def _invalid(self, what: str) -> None:
        now = time.monotonic()
        if now - self._invalid_at >= INVALID_MESSAGES_EVERY_S:
            self._invalid_at = now
            self.host.security_event("InvalidMessages", what)

    def _connected(self) -> None:
        self._failure_event = None
        self.chooser.succeeded()
        if self.link.endpoint.password:
            self.host.credentials.connected(self.link.endpoint.password)
        target = self.target
        if target is None:
            return
        if target.profile >= 2:
            self.host.certs.confirm_csms_root()
        if target.profile > self.security_profile:
            self.save(connection.FLOOR_SETTING, connection.floor_setting(self.config_profile, target.profile))
            self.host.security_event(
                "ReconfigurationOfSecurityParameters", f"connected with security profile {target.profile}"
            )
            self.current.security_profile_changed(target.profile)
        if target.trial:
            self.save(connection.TRIAL_SETTING, "")
            self.plan()

    def profile_problem(self, profile: int) -> str | None:
        """Why the station cannot use ``profile`` now, or None (its prerequisites are met)."""
        host = self.host
        if profile in (1, 2) and not 16 <= len(host.credentials.password()) <= 40:
            return f"security profile {profile} needs a Basic auth password of 16 to 40 characters"
        if profile >= 2 and not host.certs.roots_pem("CSMSRootCertificate").strip():
            return f"security profile {profile} needs a CSMS root certificate"
        if profile == 3 and host.client_certificate() is None:
            return "security profile 3 needs a client certificate"
        return None

    async def raise_profile(self, profile: int) -> None:
        """1.6: try ``profile`` from the next connection on (falls back if it fails)."""
        self.save(connection.TRIAL_SETTING, json.dumps({"profile": profile, "from": self.security_profile}))
        self.plan()
        log.warning("security profile %d requested by the CSMS: reconnecting", profile)
        await self.link.reconnect()

    async def password_changed(self) -> None:
        """A01: the CSMS set a new Basic auth password; connect again with it (if Basic auth is in use)."""
        target = self.target
        if target is not None and target.profile in (1, 2):
            log.info("new Basic auth password: reconnecting with it")
            await self.link.reconnect()

    def network_changed(self) -> None:
        """2.0.1: a slot or the priority changed; used from the next connection on."""
        self.plan()

    # -- what the daemon tells the adapter ---------------------------------------------

    def status_changed(self) -> None:
        self.current.status_changed()

    def outbox_changed(self) -> None:
        self.current.outbox_changed()

    def auth_settings(self) -> auth.AuthSettings:
        return self.current.auth_settings()

    async def authorize(self, token: str) -> auth.IdTagInfo | None:
        return await self.current.authorize(token)

    async def meter_values_now(self, evse_id: int, context: str) -> None:
        await self.current.meter_values_now(evse_id, context)

    async def firmware_status_notification(self, status: str) -> None:
        await self.current.firmware_status_notification(status)

    def station_changed(self, actions: list[Action]) -> None:
        """After each batch of station actions (2.0.1 derives its transaction events here)."""
        try:
            self.current.station_changed(actions)
        except Exception:  # a bug here must not take the control of the station with it
            log.exception("OCPP %s could not follow the station's actions", self.version)

    async def recover(self) -> None:
        """After the meters were read at start: end the interrupted 2.0.1 transactions."""
        if self.version == "2.0.1":
            await self.current.recover()

    def tick(self) -> None:
        try:
            self.current.tick()
        except Exception:
            log.exception("OCPP %s periodic work failed", self.version)

    async def drain(self, timeout: float) -> None:
        await self.current.drain(timeout)

    def reported_status(self, status: ConnectorStatus) -> str:
        """A connector status in the words of the version spoken."""
        return self.current.reported_status(status)


def make_client(host: Host, settings: dict[str, str]) -> OcppClient:
    ocpp = host.config.ocpp
    assert ocpp is not None
    versions = {"1.6": ("1.6",), "2.0.1": ("2.0.1",), "auto": ("2.0.1", "1.6")}[ocpp["version"]]
    from controller.ocpp.v201.device_model import storage_key

    key201 = "ocpp201." + storage_key(("OCPPCommCtrlr", None, None, None, "WebSocketPingInterval", None))
    stored = settings.get("ocpp16.WebSocketPingInterval" if versions[0] == "1.6" else key201, "30")
    try:
        ping = float(stored)
    except ValueError:
        ping = 30.0
    return OcppClient(host, endpoint(host, versions, ping), settings)
