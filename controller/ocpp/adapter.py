"""What the OCPP 1.6 and 2.0.1 adapters share: boot state, clock, heartbeat, outbox delivery."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from controller.aio import wait_event
from controller.core import authorization as auth
from controller.core import schedule
from controller.io.link import CallFailed, Link, NotConnected, Reply
from controller.io.link import backoff as link_backoff
from controller.io.storage import OutboxEntry, StorageError, parse_timestamp
from controller.ocpp.fields import optional_times
from controller.ocpp.ocppj import Call, RpcError
from controller.runtime.diagnostics import UploadRequest
from controller.runtime.firmware import FirmwareRequest
from controller.security import events as security

if TYPE_CHECKING:
    from cryptography import x509

    from controller.core.station import Action
    from controller.ocpp.host import Host

log = logging.getLogger(__name__)

CALL_TIMEOUT_S = 30.0
BOOT_RETRY_DEFAULT_S = 60
CLOCK_SKEW_S = 1.0  # adopt the CSMS's time when ours differs by more than this
UPLOAD_WORDS = {"UploadFailed": "UploadFailure"}
CERT_SIGNING_WAIT_S = 60
CERT_SIGNING_REPEAT = 3
RENEW_BEFORE = timedelta(days=30)
RENEW_CHECK_S = 12 * 3600
SECURITY_ATTEMPTS = 3  # a SecurityEventNotification the CSMS keeps refusing is then dropped
RETRY_BACKOFF_MAX_S = 3600.0  # a CSMS-set back-off never keeps the station away longer


def retry_backoff(attempt: int, minimum: int, repeat_times: int, random_range: int, jitter: float) -> float:
    """2.0.1 Part 4 5.3: ``minimum`` doubled after each failed attempt, at most ``repeat_times``
    times, plus ``jitter`` (0..1) of ``random_range``. Capped at an hour: the limits allow
    3600 s x 2^20, which would leave the station offline for good after a CSMS typo."""
    wait = minimum * 2 ** min(max(attempt, 0), max(repeat_times, 0)) + jitter * random_range
    return float(min(wait, RETRY_BACKOFF_MAX_S))


@dataclass(frozen=True)
class Retries:
    """How often an outbox message is sent before it is dropped, and the wait between: the
    ``interval_s`` times the number of attempts so far."""

    attempts: int
    interval_s: float


def csms_of(url: str) -> str:
    """Which CSMS a URL reaches: the same one with another scheme (a raised security profile)
    is the same CSMS."""
    return url.split("://", 1)[-1].rstrip("/")


class Adapter:
    VERSION = ""
    SIGN_CERTIFICATE_TRIGGER = ""  # the trigger's name for a new client certificate
    firmware_status: str
    OUTBOX_KINDS: tuple[str, ...] = ()
    _handlers: dict[str, Callable[[dict[str, Any]], Awaitable[Reply]]]
    _status_sent: dict[int, Any]  # per connector or EVSE: the status the CSMS last got

    def __init__(self, host: Host, link: Link) -> None:
        self.host = host
        self.link = link
        self.accepted = False  # registered on this connection (booted, or reconnected after a boot)
        # The CSMS (see csms_of) that accepted a BootNotification since start-up (and since it
        # last chose this version): a reconnection to it is not a boot, and sends none (1.6 4.2,
        # 2.0.1 B01); a connection to another CSMS (a 2.0.1 network slot) boots there first.
        self.booted_at: str | None = None
        self.registration = "none"
        self._session: list[asyncio.Task[Any]] = []
        self._outbox_wake = asyncio.Event()
        self._delivered: set[int] = set()  # answered, removal from the outbox not yet committed
        self._answered: dict[int, dict[str, Any]] = {}  # outbox id -> answer the closing session lost
        self._heartbeat_changed = asyncio.Event()
        self.log_status = "Idle"
        self.log_request: int | None = None
        self._log_upload: asyncio.Task[Any] | None = None
        self._log_active = False  # an upload runs that has not reported its outcome yet
        self._signed_event = asyncio.Event()
        self._boot_wake = asyncio.Event()
        self._status_wake = asyncio.Event()

    @property
    def online(self) -> bool:
        return self.link.connected and self.accepted

    def must_boot(self) -> bool:
        """Whether the CSMS connected to has not accepted a BootNotification from this run."""
        return self.booted_at != csms_of(self.link.endpoint.url)

    def boot_done(self) -> None:
        self.booted_at = csms_of(self.link.endpoint.url)

    async def opened(self, version: str) -> None:
        self.accepted = False
        if self.must_boot():
            await self._boot()
            self.boot_done()
            self._status_sent.clear()  # after a boot the CSMS learns every connector's status
        self.accepted = True
        self._session = [
            self.host.spawn(self._heartbeat()),
            self.host.spawn(self._deliver_outbox()),
            self.host.spawn(self._send_statuses()),
            self.host.spawn(self._renew_certificate()),
        ]
        self._status_wake.set()
        self._outbox_wake.set()
        self._session_started()
        await self.host.ocpp_ready()

    # -- boot ----------------------------------------------------------------------------

    def _identity(
        self, vendor_field: str, vendor_length: int, model_field: str, serial_field: str
    ) -> dict[str, Any]:
        """The station's make in a BootNotification: the field names and lengths differ."""
        station = self.host.config.station
        identity: dict[str, Any] = {
            vendor_field: station["vendor"][:vendor_length],
            model_field: station["model"][:20],
            "firmwareVersion": self.host.version[:50],
        }
        if station.get("serial"):
            identity[serial_field] = station["serial"][:25]
        return identity

    def _boot_payload(self) -> dict[str, Any]:
        raise NotImplementedError

    def _set_heartbeat_interval(self, seconds: int) -> None:
        raise NotImplementedError

    def _boot_accepted(self) -> None:
        """What a version does once the CSMS accepted its BootNotification."""

    async def _boot(self) -> None:
        """BootNotification until the CSMS accepts it, waiting between tries as it says."""
        while True:
            try:
                reply = await self.link.call("BootNotification", self._boot_payload(), self.call_timeout())
            except (CallFailed, TimeoutError) as exc:
                log.warning("BootNotification failed (%s); retrying in %d s", exc, BOOT_RETRY_DEFAULT_S)
                await asyncio.sleep(BOOT_RETRY_DEFAULT_S)
                continue
            self.registration = reply["status"]
            self._adopt_clock(reply["currentTime"])
            interval = int(reply["interval"])
            if reply["status"] == "Accepted":
                if interval > 0:
                    self._set_heartbeat_interval(interval)
                log.info("BootNotification accepted; heartbeat every %d s", self.heartbeat_interval())
                self._boot_accepted()
                return
            wait = interval if interval > 0 else BOOT_RETRY_DEFAULT_S
            log.warning("BootNotification %s by the CSMS; retrying in %d s", reply["status"], wait)
            self._boot_wake.clear()
            await wait_event(self._boot_wake, wait)  # or at once when triggered (2.0.1)

    # -- status ------------------------------------------------------------------------

    def status_changed(self) -> None:
        self._status_wake.set()

    async def _send_statuses(self) -> None:
        raise NotImplementedError

    async def _status_call(self, payload: dict[str, Any], where: str) -> bool:
        """One StatusNotification; whether the CSMS answered it."""
        try:
            await self.link.call("StatusNotification", payload, self.call_timeout())
        except (NotConnected, CallFailed, TimeoutError) as exc:
            log.warning("StatusNotification for %s not delivered: %s", where, exc)
            return False
        return True

    async def _notify(self, action: str, payload: dict[str, Any]) -> None:
        """A notification whose loss nothing repeats (a later one or a trigger says it again)."""
        with contextlib.suppress(NotConnected, CallFailed, TimeoutError):
            await self.link.call(action, payload, self.call_timeout())

    def _evse(self, evse_id: int | None) -> bool:
        """An EVSE (1.6: a connector) of this station."""
        return evse_id in self.host.station.evses

    def _session_started(self) -> None:
        """What a version does besides the shared session tasks once registered."""

    # -- what the client calls (controller.ocpp.host.VersionAdapter) ---------------------

    async def recover(self) -> None:
        """After the meters were read at start: end what a power cut left open (2.0.1)."""

    def tick(self) -> None:
        """Once a second, for periodic work of the version."""

    def station_changed(self, actions: list[Action]) -> None:
        """After each batch of station actions (2.0.1 derives its transaction events here)."""

    def closed(self) -> None:
        self.accepted = False
        for task in self._session:
            task.cancel()
        self._session = []

    async def handle(self, call: Call) -> Reply:
        if not self.accepted and self.registration == "Rejected":
            raise RpcError("security", "the CSMS rejected our BootNotification")
        handler = self._handlers.get(call.action)
        if handler is None:
            # OCPP-J: NotSupported = known but not supported. An action the version does not
            # define never gets here: its schema check answered NotImplemented.
            raise RpcError("not_supported", f"{call.action} is not supported")
        log.info(
            "%s from the CSMS",
            call.action,
            extra={"ocpp_action": call.action, "ocpp_message_id": call.unique_id},
        )
        return await handler(call.payload)

    # -- clock and heartbeat -----------------------------------------------------------

    def heartbeat_interval(self) -> int:
        raise NotImplementedError

    def call_timeout(self) -> float:
        """How long to wait for the CSMS's answer to a request."""
        return CALL_TIMEOUT_S

    def backoff(self, attempt: int) -> float:
        """The wait before reconnecting after ``attempt`` failed attempts."""
        return link_backoff(attempt)

    def _adopt_clock(self, text: str) -> None:
        try:
            theirs = parse_timestamp(text)
        except ValueError:
            log.warning("the CSMS sent an unreadable currentTime %r; clock unchanged", text)
            return
        skew = (theirs - self.host.now()).total_seconds()
        if abs(skew) > CLOCK_SKEW_S:
            self.host.set_clock(timedelta(seconds=skew))
            log.info("clock set from the CSMS (%+.1f s)", skew)
            self.host.security_event("SettingSystemTime", f"clock moved {skew:+.1f} s to the CSMS's time")

    async def _heartbeat(self) -> None:
        while True:
            interval = self.heartbeat_interval() or 86400
            self._heartbeat_changed.clear()
            if not await wait_event(self._heartbeat_changed, interval):
                await self.heartbeat()

    async def heartbeat(self) -> None:
        with contextlib.suppress(NotConnected, CallFailed, TimeoutError):
            reply = await self.link.call("Heartbeat", {}, self.call_timeout())
            self._adopt_clock(reply["currentTime"])

    # -- outbox ------------------------------------------------------------------------

    def outbox_changed(self) -> None:
        self._outbox_wake.set()

    async def _deliver(self, entry: OutboxEntry) -> bool:
        raise NotImplementedError

    async def _deliver_security(self, entry: OutboxEntry) -> bool:
        payload = security.notification(self.VERSION, entry.body)
        reply = await self._call_entry(
            entry, "SecurityEventNotification", payload, lambda: Retries(SECURITY_ATTEMPTS, 5.0)
        )
        if reply is None:
            return False
        if not isinstance(reply, dict):
            log.error("SecurityEventNotification %s dropped: %s", payload["type"], reply)
        await self.host.records.outbox_delivered(entry.id, entry.transaction_id)
        return True

    async def _call_entry(
        self, entry: OutboxEntry, action: str, payload: dict[str, Any], retries: Callable[[], Retries]
    ) -> dict[str, Any] | CallFailed | TimeoutError | None:
        """Send an outbox entry's message until the CSMS answers: its answer; the last error
        once the attempts ran out (the caller drops the entry); None when the connection
        closed first (the entry stays for the next session)."""
        carried = self._answered.pop(entry.id, None)
        if carried is not None:
            return carried  # answered as the last connection closed: not sent again
        attempts = entry.attempts
        while True:
            try:
                return await self._answer_of(entry, action, payload)
            except NotConnected:
                return None
            except (CallFailed, TimeoutError) as exc:
                attempts += 1
                await self.host.records.outbox_attempted(entry.id)
                limit = retries()  # read again: the CSMS may change it meanwhile
                if attempts >= limit.attempts:
                    return exc
                wait = limit.interval_s * attempts
                log.warning("%s not accepted (%s); attempt %d in %g s", action, exc, attempts + 1, wait)
                await asyncio.sleep(wait)

    async def _answer_of(self, entry: OutboxEntry, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        """The CSMS's answer to one sending of an outbox entry. An answer that arrives in the
        same instant as the connection closes (which cancels the outbox task before it reads
        the answer) is kept for the next session, so the entry is not sent twice."""
        call = asyncio.ensure_future(self.link.call(action, payload, self.call_timeout()))
        try:
            return await asyncio.shield(call)
        except asyncio.CancelledError:
            # The session ended. Cancelling the call stops a message not yet sent; one whose
            # answer the link already holds still returns it (asyncio.wait_for in the link
            # gives a finished answer rather than the cancellation on Python 3.11).
            call.add_done_callback(functools.partial(self._keep_answer, entry.id))
            call.cancel()
            raise

    def _keep_answer(self, entry_id: int, call: asyncio.Future[dict[str, Any]]) -> None:
        if not call.cancelled() and call.exception() is None:
            self._answered[entry_id] = call.result()

    async def _entry_delivered(self, entry: OutboxEntry, last: bool, csms_id: str | None = None) -> None:
        """Remove an answered entry from the outbox (``csms_id``: the CSMS's transaction id)."""
        if last:
            # The shortest window between the CSMS's answer and the commit: a crash in it
            # sends the message again after the restart.
            await self.host.records.outbox_delivered(entry.id, entry.transaction_id)
            return
        # The next message need not wait for this commit (the database has its own thread);
        # until it lands, the entry is skipped when the outbox is read again.
        self._delivered.add(entry.id)
        self.host.records.outbox_delivered_later(
            entry.id, entry.transaction_id, csms_id, functools.partial(self._committed, entry.id)
        )

    async def _deliver_outbox(self) -> None:
        """Send the outbox in order while connected; the session's end cancels this."""
        records = self.host.records
        while True:
            try:
                entries = await records.outbox(50, self.OUTBOX_KINDS)
                entries = [e for e in entries if e.id not in self._delivered]
                if not entries:
                    self._outbox_wake.clear()
                    await wait_event(self._outbox_wake, 5.0)
                    continue
                for entry in entries:
                    deliver = self._deliver_security if entry.kind == "security" else self._deliver
                    if not await deliver(entry):
                        return  # the connection is gone; the next session starts over
            except StorageError as exc:
                # A full or locked disk: nothing is lost, the outbox is read again.
                log.error("transaction messages held back: %s", exc)
                await asyncio.sleep(5.0)

    async def drain(self, timeout: float) -> None:
        """Give queued transaction messages up to ``timeout`` s to reach the CSMS (shutdown)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        records = self.host.records
        while self.online and loop.time() < deadline:
            try:
                if not await records.outbox_size() and not self._delivered:
                    return
            except StorageError:
                return
            await asyncio.sleep(0.05)

    # -- logs (2.0.1 GetLog; 1.6 Security Whitepaper GetLog) ----------------------------

    async def _get_log(self, p: dict[str, Any]) -> Reply:
        window = p["log"]
        times = optional_times(window, "oldestTimestamp", "latestTimestamp")
        security_log = p["logType"] == "SecurityLog"
        name = self.host.diagnostics_name()
        if security_log:
            name = name.replace(".tar.gz", "-security.log")
        running = self._log_active and self._log_upload is not None and not self._log_upload.done()
        cancelled = self.log_request
        if running:
            assert self._log_upload is not None
            self._log_upload.cancel()  # AcceptedCanceled: the new request replaces it
        self.log_request = p["requestId"]
        self._log_active = True

        async def start() -> None:
            if running and self.VERSION == "2.0.1":
                await self._log_status_call({"status": "AcceptedCanceled", "requestId": cancelled})
            location, notify = window["remoteLocation"], self.log_status_notification
            self._log_upload = self.host.spawn(self._upload(location, name, times, p, notify, security_log)())

        return Reply({"status": "AcceptedCanceled" if running else "Accepted", "filename": name}, start)

    def _upload(
        self,
        location: str,
        name: str,
        times: list[datetime | None],
        p: dict[str, Any],
        notify: Callable[[str], Awaitable[None]],
        security_log: bool = False,
    ) -> Callable[[], Coroutine[object, object, None]]:
        """The upload of the diagnostics (or the security log) between ``times`` that ``p``
        asks for, reporting its progress to ``notify``."""
        retries, interval = p.get("retries", 0), p.get("retryInterval", 30)

        request = UploadRequest(location, name, times[0], times[1], retries, interval, security_log)

        def upload() -> Coroutine[object, object, None]:
            return self.host.upload_diagnostics(request, notify)

        return upload

    async def log_status_notification(self, status: str) -> None:
        status = UPLOAD_WORDS.get(status, status)
        self.log_status = status if status == "Uploading" else "Idle"
        if status != "Uploading":
            self._log_active = False  # a GetLog from now on starts afresh
        payload: dict[str, Any] = {"status": status}
        if self.log_request is not None and status != "Idle":
            payload["requestId"] = self.log_request
        await self._log_status_call(payload)

    async def _log_status_call(self, payload: dict[str, Any]) -> None:
        await self._notify("LogStatusNotification", payload)

    async def firmware_status_notification(self, status: str) -> None:
        raise NotImplementedError

    def _shared_trigger(self, message: str) -> Callable[[], Awaitable[None]] | None:
        """The follow-up of a triggered message both versions send alike, or None."""
        if message == "FirmwareStatusNotification":
            return lambda: self.firmware_status_notification(self.firmware_status)
        if message == "LogStatusNotification":
            return lambda: self.log_status_notification(self.log_status)
        if message == self.SIGN_CERTIFICATE_TRIGGER:
            return self.request_certificate
        return None

    # -- client certificate ------------------------------------------------------------

    async def _delete_certificate(self, p: dict[str, Any]) -> Reply:
        return Reply({"status": await self.host.delete_certificate(p["certificateHashData"])})

    def organization(self) -> str:
        raise NotImplementedError

    def sign_certificate_payload(self, csr: str) -> dict[str, Any]:
        return {"csr": csr}

    def cert_signing_wait(self) -> tuple[int, int]:
        """(seconds to wait for CertificateSigned, times to repeat the request)."""
        return CERT_SIGNING_WAIT_S, CERT_SIGNING_REPEAT

    async def request_certificate(self) -> None:
        """SignCertificate with a new key pair; again while no CertificateSigned comes."""
        wait, repeat = self.cert_signing_wait()
        for attempt in range(repeat + 1):
            csr = await self.host.certificate_request(self.organization())
            self._signed_event.clear()
            try:
                payload = self.sign_certificate_payload(csr)
                reply = await self.link.call("SignCertificate", payload, self.call_timeout())
            except (NotConnected, CallFailed, TimeoutError) as exc:
                log.warning("SignCertificate not sent: %s", exc)
                return
            if reply["status"] != "Accepted":
                log.error("the CSMS rejected our certificate signing request")
                return
            if await wait_event(self._signed_event, wait * 2**attempt):
                return
            log.warning("no CertificateSigned within %d s", wait * 2**attempt)

    async def _certificate_signed_reply(self, chain: str, max_bytes: int | None) -> Reply:
        ok = await self.host.certificate_signed(chain, max_bytes)
        if not ok:
            return Reply({"status": "Rejected"})
        self._signed_event.set()
        target = self.host.ocpp.target
        if target is not None and target.profile == 3:
            return Reply({"status": "Accepted"}, self.link.reconnect)  # with the new certificate
        return Reply({"status": "Accepted"})

    async def _renew_certificate(self) -> None:
        """Ask for a new client certificate when the one in use expires within a month."""
        while True:
            expiry = self.host.client_certificate_expiry()
            if expiry is not None and expiry - self.host.now() < RENEW_BEFORE:
                log.warning("client certificate expires %s: requesting a new one", expiry.isoformat())
                await self.request_certificate()
            await asyncio.sleep(RENEW_CHECK_S)

    def _committed(self, entry_id: int) -> None:
        self._delivered.discard(entry_id)
        self._outbox_wake.set()

    # -- authorization and remote start -------------------------------------------------

    def _authorize_payload(self, token: str) -> dict[str, Any]:
        raise NotImplementedError

    def _authorize_info(self, reply: dict[str, Any]) -> auth.IdTagInfo:
        """The CSMS's verdict in an Authorize answer; ValueError when unreadable."""
        raise NotImplementedError

    async def authorize(self, token: str) -> auth.IdTagInfo | None:
        """Ask the CSMS; None when it cannot answer (offline rules apply)."""
        if not self.online:
            return None
        try:
            reply = await self.link.call("Authorize", self._authorize_payload(token), self.call_timeout())
            return self._authorize_info(reply)
        except (NotConnected, CallFailed, TimeoutError, ValueError) as exc:
            log.warning("Authorize for %s not answered (%s); offline rules apply", token, exc)
            return None

    def _start_remotely(
        self,
        evse_id: int | None,
        token: str,
        profile: schedule.Profile | None,
        reply: dict[str, Any],
        authorize_first: bool,
        refused: Callable[[], None] = lambda: None,
    ) -> Reply:
        """A remote start the station can take: at once, or once the CSMS authorized ``token``
        (after the reply); ``refused`` undoes what the version noted for it."""
        if authorize_first:

            async def authorize_then_start() -> None:
                info = await self.host.authorize_token(token)
                if info is not None and info.status == "Accepted":
                    self.host.remote_start(evse_id, token, info.parent, profile)
                else:
                    refused()
                    log.warning("remote start for %s: the token is not authorized", token)

            return Reply(reply, authorize_then_start)
        if not self.host.remote_start(evse_id, token, None, profile):
            refused()
            return Reply({"status": "Rejected"})
        return Reply(reply)

    async def _cancel_reservation(self, p: dict[str, Any]) -> Reply:
        ok = await self.host.cancel_reservation(p["reservationId"])
        return Reply({"status": "Accepted" if ok else "Rejected"})

    async def _data_transfer(self, p: dict[str, Any]) -> Reply:
        return Reply({"status": "UnknownVendorId"})

    async def _local_list(
        self, update_type: str, version: int, parse: Callable[[], list[tuple[str, auth.IdTagInfo | None]]]
    ) -> Reply:
        try:
            entries = parse()
        except ValueError as exc:
            log.warning("SendLocalList refused: %s", exc)
            return Reply({"status": "Failed"})
        return Reply({"status": await self.host.update_local_list(update_type, version, entries)})

    # -- smart charging ----------------------------------------------------------------

    async def _clear_profiles(
        self,
        profile_id: int | None,
        evse_id: int | None,
        purpose: schedule.Purpose | None,
        stack_level: int | None,
    ) -> Reply:
        count = await self.host.clear_profiles(profile_id, evse_id, purpose, stack_level)
        return Reply({"status": "Accepted" if count else "Unknown"})

    def _composite(self, evse_id: int, p: dict[str, Any]) -> tuple[datetime, list[schedule.Period], str]:
        """The composite schedule asked for: its start (the request's own instant, no
        truncation to the second), periods and unit."""
        unit = "W" if p.get("chargingRateUnit") == "W" else "A"
        start = self.host.now()
        return start, self.host.composite(evse_id, start, p["duration"], unit), unit

    # -- meter values ------------------------------------------------------------------

    def _meter_values_payload(
        self, evse_id: int, sample: dict[str, Any], context: str
    ) -> dict[str, Any] | None:
        raise NotImplementedError

    async def meter_values_now(self, evse_id: int, context: str) -> None:
        """MeterValues outside a transaction (clock-aligned or triggered); not queued."""
        sample = self.host.sample(evse_id, context)
        if sample is None or not self.online:
            return
        payload = self._meter_values_payload(evse_id, sample, context)
        if payload is not None:
            await self._notify("MeterValues", payload)

    def _meter_values_trigger(self, evses: list[int]) -> Callable[[], Awaitable[None]]:
        async def follow_up() -> None:
            for evse_id in evses:
                await self.meter_values_now(evse_id, "Trigger")

        return follow_up

    # -- firmware ----------------------------------------------------------------------

    def _firmware_times(self, firmware: dict[str, Any]) -> tuple[datetime, datetime | None]:
        retrieve, install = optional_times(firmware, "retrieveDateTime", "installDateTime")
        if retrieve is None:
            raise RpcError("property", "retrieveDateTime is missing")
        return retrieve, install

    def _start_firmware(self, request: FirmwareRequest) -> Callable[[], Awaitable[None]]:
        async def start() -> None:
            self.host.update_firmware(request, self.firmware_status_notification)

        return start

    def _update_signed_firmware(
        self,
        p: dict[str, Any],
        times: tuple[datetime, datetime | None],
        signature: str | None,
        cert: x509.Certificate | None,
    ) -> Reply:
        """Accepted, or AcceptedCanceled when it replaces an update under way."""
        request = FirmwareRequest(
            p["firmware"]["location"],
            times[0],
            p.get("retries", 0),
            p.get("retryInterval", 30),
            times[1],
            signature,
            cert,
        )
        maintenance = self.host.maintenance
        running = maintenance is not None and not maintenance.done()
        return Reply({"status": "AcceptedCanceled" if running else "Accepted"}, self._start_firmware(request))

    # -- certificates ------------------------------------------------------------------

    async def _install_certificate_reply(self, kind: str, pem: str, additional_check: bool) -> Reply:
        return Reply({"status": await self.host.install_certificate(kind, pem, additional_check)})

    def _installed_certificates(self, kinds: list[str] | None) -> list[tuple[str, dict[str, str]]] | None:
        """The certificates of ``kinds`` installed (their type, hash data); None when none is."""
        return self.host.certs.installed(kinds) or None
