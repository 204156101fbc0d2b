"""Start-up: open storage and drivers, build the station model and the control channels,
and read back what the station had stored (OCPP state, certificates, credentials)."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from controller.config import Config
from controller.core import authorization as auth
from controller.core import schedule
from controller.core import station as station_model
from controller.core.station import Reservation, Station
from controller.io import logs
from controller.io.database import Database, WriteQueue
from controller.io.records import Records
from controller.io.storage import Storage, StorageError, load_cache, load_local_list
from controller.security.certerrors import CertError
from controller.security.certstore import CertStore
from controller.security.credentials import Credentials
from controller.security.events import SECURITY_LOG, SecurityLog
from drivers.base import DriverError, MeterDriver, RfidDriver
from drivers.registry import build_meter, build_rfid

if TYPE_CHECKING:
    from controller.runtime.safety_side import ChannelPort, SafetySide

log = logging.getLogger(__name__)

DB_FILE = "evse.db"
FRAME_LOG = "ocpp-frames.log"


class StartupError(Exception):
    """The daemon cannot start; the message says what to fix."""


@dataclass
class Hardware:
    """Storage, the meters and reader, the station model and the control channels."""

    database: Database
    writes: WriteQueue
    records: Records
    security_log: SecurityLog
    meters: dict[int, MeterDriver]
    rfid: RfidDriver | None
    station: Station
    read_now: dict[int, asyncio.Event]  # set: read that EVSE's meter now
    channels: Mapping[int, ChannelPort]


@dataclass
class Stored:
    """What the OCPP services keep across restarts, besides the charging profiles (the
    station model holds those); empty standalone."""

    local_list: auth.LocalList = field(default_factory=auth.LocalList)
    auth_cache: auth.AuthCache = field(default_factory=auth.AuthCache)
    csms_ids: dict[str, str] = field(default_factory=dict)  # local transaction id -> the CSMS's
    settings: dict[str, str] = field(default_factory=dict)


@dataclass
class OcppFiles:
    """The files an [ocpp] station keeps besides the database."""

    frames: logs.FrameLog | None
    certs: CertStore
    client_files: tuple[Path, Path] | None  # the config's cert_file and key_file
    credentials: Credentials


def open_hardware(config: Config, safety: SafetySide) -> Hardware:
    """Storage, the meters and the reader (the control loops' drivers are ``safety``'s)."""
    try:
        config.storage_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StartupError(f"storage.dir: cannot create {config.storage_dir}: {exc.strerror}") from exc
    try:
        database = Database(Storage(config.storage_dir / DB_FILE))
    except StorageError as exc:
        raise StartupError(str(exc)) from exc
    with contextlib.suppress(OSError):
        (config.storage_dir / DB_FILE).chmod(0o600)  # it holds tokens and transactions
    writes = WriteQueue(database)
    try:
        meters = {e.id: build_meter(e, partial(safety.sim_meter, e.id)) for e in config.evses}
        rfid = build_rfid(config, safety.sim_rfid)
    except DriverError as exc:
        raise StartupError(str(exc)) from exc
    station = Station.create(
        {e.id: e.max_current_a for e in config.evses},
        config.auth["mode"],
        config.auth["allow"],
        config.auth["free_id"],
        {e.id: e.phases for e in config.evses},
    )
    return Hardware(
        database,
        writes,
        Records(database, writes),
        SecurityLog(config.storage_dir / SECURITY_LOG),
        meters,
        rfid,
        station,
        {e.id: asyncio.Event() for e in config.evses},
        safety.channels,
    )


def load_stored(hardware: Hardware, now: Callable[[], datetime]) -> Stored:
    """Local list, cache, profiles, reservations, availability and keys from storage."""
    storage, station = hardware.database.storage, hardware.station
    try:
        stored = Stored(load_local_list(storage), load_cache(storage))
        station.profiles.load(
            schedule.from_ocpp16(body, evse_id) for evse_id, body in storage.charging_profiles()
        )
        stored.settings = storage.settings()
        for rid, evse_id, id_tag, parent, until in storage.reservations():
            if evse_id in station.evses and until > now():
                station.evses[evse_id].reservation = Reservation(rid, evse_id, id_tag, until, parent)
            else:
                hardware.records.delete_reservation(rid)
        stored.csms_ids = storage.open_csms_ids()
    except Exception as exc:  # StorageError, sqlite3.Error, a profile that no longer parses
        raise StartupError(f"cannot read the OCPP state in {storage.path}: {exc}") from exc
    for evse_id, state in station.evses.items():  # the ChangeAvailability levels persisted
        state.inoperative = station_model.parse_availability(stored.settings.get(f"availability.{evse_id}"))
    station.drain()
    return stored


def open_ocpp_files(config: Config) -> OcppFiles:
    ocpp = config.ocpp
    assert ocpp is not None
    frames = None
    try:
        frames = logs.FrameLog(
            config.storage_dir / FRAME_LOG,
            config.logging.get("frame_log_kib", 1024) * 1024,
            config.logging.get("frame_log_files", 5),
        )
    except OSError as exc:
        log.error("OCPP frame log disabled: %s", exc)
    roots: dict[str, list[Path]] = {}
    if ocpp.get("ca_file"):
        roots["CSMSRootCertificate"] = [config.file(ocpp["ca_file"])]
    if config.firmware.get("signing_ca_file"):
        roots["ManufacturerRootCertificate"] = [config.file(config.firmware["signing_ca_file"])]
    try:
        certs = CertStore(config.storage_dir / "certs", roots)
    except CertError as exc:
        raise StartupError(f"certificates: {exc}") from exc
    client_files = (
        (config.file(ocpp["cert_file"]), config.file(ocpp["key_file"]))
        if ocpp.get("cert_file") and ocpp.get("key_file")
        else None
    )
    if ocpp.get("security_profile", 0) >= 3 or client_files or config.firmware.get("signing_ca_file"):
        # Certificates will be parsed: import cryptography now, before the control threads
        # run, rather than hold them off on first use (controller.lazy).
        importlib.import_module("controller.security.certs")
    return OcppFiles(frames, certs, client_files, Credentials(config.storage_dir, ocpp.get("password") or ""))
