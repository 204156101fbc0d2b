"""The station core's data: each EVSE's state, transactions, reservations, and the actions
the station returns. No I/O and no rules: ``controller.core.station`` decides.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum

from controller.safety.supervisor import Fault
from controller.safety.view import EvseView as EvseView
from drivers.base import MeterReading

# What may hold an EVSE inoperative. 2.0.1 keeps the station's, the EVSE's and the connector's
# own ChangeAvailability apart (G03, G04): each level stays as it was set when another changes.
# The firmware update's hold (idle EVSEs wait for the install) is the station's own.
STATION, EVSE, CONNECTOR, FIRMWARE = "station", "evse", "connector", "firmware"
LEVELS = (STATION, EVSE, CONNECTOR)  # those ChangeAvailability sets, and that persist


def availability_setting(inoperative: set[str]) -> str:
    """The persisted form of an EVSE's ChangeAvailability levels: "operative" or e.g. "evse,station"."""
    return ",".join(sorted(inoperative & set(LEVELS))) or "operative"


def parse_availability(value: str | None) -> set[str]:
    """The levels an ``availability_setting`` names; "inoperative" (from before levels) is the EVSE's."""
    if value == "inoperative":
        return {EVSE}
    return {level for level in (value or "").split(",") if level in LEVELS}


class ConnectorStatus(Enum):
    """What an EVSE's connector is doing, as the station tells the CSMS and the user.

    The core's own words: each OCPP adapter (``controller.ocpp.v16.words``,
    ``controller.ocpp.v201.words``) says them in its version's.
    """

    AVAILABLE = "available"  # free: no EV, no session waiting
    PREPARING = "preparing"  # a session is on its way: an EV without its token, a token without its EV
    CHARGING = "charging"  # energy flows
    SUSPENDED_EV = "suspended_ev"  # energy offered, the EV takes none
    SUSPENDED_EVSE = "suspended_evse"  # the station offers no energy (limit, refused id tag)
    FINISHING = "finishing"  # the transaction ended, the EV is still plugged in
    RESERVED = "reserved"
    UNAVAILABLE = "unavailable"  # inoperative (ChangeAvailability, firmware install)
    FAULTED = "faulted"  # a fault, or a shorted pilot: see ``EvseState.status``


class StopReason(Enum):
    """Why a transaction ended; each adapter names it in its version's words."""

    LOCAL = "local"  # the token that started it (or its group) was presented again
    REMOTE = "remote"  # the CSMS stopped it
    EV_DISCONNECTED = "ev_disconnected"
    POWER_LOSS = "power_loss"  # found open after a crash or power cut
    DEAUTHORIZED = "deauthorized"  # the CSMS refused its id tag
    EMERGENCY_STOP = "emergency_stop"  # a residual current trip
    HARD_RESET = "hard_reset"
    SOFT_RESET = "soft_reset"
    REBOOT = "reboot"  # the station stops or restarts (shutdown, firmware install)
    UNLOCK_COMMAND = "unlock_command"  # the CSMS unlocked the connector
    OTHER = "other"  # any other fault


class AvailabilityChange(Enum):
    """What a ChangeAvailability did."""

    ACCEPTED = "accepted"  # in force now
    SCHEDULED = "scheduled"  # once the transactions running end


class ReservationResult(Enum):
    """The answer to a reservation."""

    ACCEPTED = "accepted"
    FAULTED = "faulted"
    OCCUPIED = "occupied"  # a session, an EV or another reservation holds the EVSE
    UNAVAILABLE = "unavailable"
    REJECTED = "rejected"  # no such EVSE, or the station does not reserve


class ReservationEnd(Enum):
    """Why a reservation ended."""

    USED = "used"  # its holder started a transaction
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    REMOVED = "removed"  # the EVSE became Faulted or Unavailable


class UnlockResult(Enum):
    """What unlocking a connector did."""

    UNLOCKED = "unlocked"
    FAILED = "failed"  # welded contacts, or a jammed lock
    NO_LOCK = "no_lock"  # a tethered cable: nothing to unlock, the session goes on


# The faults, the one that names an EVSE's Faulted status first.
FAULT_PRIORITY: tuple[Fault, ...] = (
    Fault.RCD,
    Fault.CONTACTOR_WELD,
    Fault.CONTACTOR_STUCK,
    Fault.OVERCURRENT,
    Fault.METER,
    Fault.DIODE,
    Fault.LOCK,
    Fault.RCD_TEST,
    Fault.HARDWARE,
)
FAULT_STOP_REASONS = {Fault.RCD: StopReason.EMERGENCY_STOP}  # any other fault stops with OTHER
# A missing diode keeps the session: the supervisor needs the PWM it permits to see the
# diode come back, and the EV may well recover. Every other fault ends the transaction.
SESSION_KEEPING_FAULTS = frozenset({Fault.DIODE})


@dataclass
class Transaction:
    id: str
    evse_id: int
    id_tag: str
    started_at: datetime
    meter_start_wh: float
    persisted: bool = False
    last_sample_at: datetime | None = None
    reservation_id: int | None = None
    parent: str | None = None
    offered: bool = False  # the PWM has offered energy since the start
    # The CSMS refused the id tag but the transaction goes on (StopTransactionOnInvalidId
    # false): energy only up to this meter reading (2.0.1 MaxEnergyOnInvalidId; 1.6: none).
    energy_cap_wh: float | None = None
    # Started without identification (auth mode "free"): the station chose to charge, so
    # the CSMS's verdict on the id it is reported under cannot stop it.
    unidentified: bool = False


@dataclass(frozen=True, slots=True)
class Reservation:
    id: int
    evse_id: int
    id_tag: str
    expiry: datetime
    parent: str | None = None

    def admits(self, token: str, parent: str | None) -> bool:
        return token == self.id_tag or (self.parent is not None and parent == self.parent)


# -- actions ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TransactionStarted:
    tx: Transaction


@dataclass(frozen=True, slots=True)
class TransactionStopped:
    tx_id: str
    evse_id: int
    stopped_at: datetime
    meter_stop_wh: float
    reason: StopReason
    id_tag: str | None = None  # the token that stopped it, if one did


@dataclass(frozen=True, slots=True)
class MeterSampled:
    tx_id: str
    taken_at: datetime
    reading: MeterReading
    evse_id: int = 0
    context: str = "Sample.Periodic"


@dataclass(frozen=True, slots=True)
class MeterReadWanted:
    """Read this EVSE's meter now rather than at the next poll."""

    evse_id: int


@dataclass(frozen=True, slots=True)
class Permit:
    evse_id: int
    authorized: bool
    limit_a: float


@dataclass(frozen=True, slots=True)
class StatusChanged:
    evse_id: int
    status: ConnectorStatus
    fault: Fault | None = None  # why it is Faulted (None: no fault, or a shorted pilot)
    info: str = ""


@dataclass(frozen=True, slots=True)
class TokenRejected:
    token: str
    reason: str


@dataclass(frozen=True, slots=True)
class AuthorizeWanted:
    """Auth mode "ocpp": find out whether this token may charge (local list, cache, CSMS)."""

    token: str


@dataclass(frozen=True, slots=True)
class ReservationEnded:
    reservation_id: int
    evse_id: int
    reason: ReservationEnd


Action = (
    TransactionStarted
    | TransactionStopped
    | MeterSampled
    | MeterReadWanted
    | Permit
    | StatusChanged
    | TokenRejected
    | AuthorizeWanted
    | ReservationEnded
)


@dataclass
class Stopping:
    tx: Transaction
    reason: StopReason
    at: datetime
    deadline: datetime
    id_tag: str | None = None


@dataclass
class EvseState:
    id: int
    max_current_a: float  # the hardware limit (cable, breaker)
    phases: int = 3  # those it is wired for
    view: EvseView | None = None
    reading: MeterReading | None = None
    ev_present: bool = False  # from the last pilot state that shows the EV (A..D)
    token: str | None = None  # the authorized identity of the session
    token_parent: str | None = None
    token_expires: datetime | None = None  # a token given before the EV is plugged in
    tx: Transaction | None = None
    stopping: Stopping | None = None  # ended, waiting for its final meter reading
    finishing: bool = False  # stopped by the user while the EV is still plugged
    # As last evaluated (None before the first view): the status and, when Faulted, the fault why.
    status: tuple[ConnectorStatus, Fault | None] | None = None
    permit: tuple[bool, float] = (False, 0.0)
    inoperative: set[str] = field(default_factory=set)  # the levels holding it inoperative
    reservation: Reservation | None = None
    limit_a: float = math.inf  # the effective limit (core.limits): 0 when under 6 A
    next_tx_id: str | None = None  # the id the next transaction takes: see Station.upcoming_tx_id
    departed_at: datetime | None = None  # when an EV last left

    @property
    def available(self) -> bool:
        """Operative at every level; an inoperative EVSE finishes its transaction first."""
        return not self.inoperative

    @property
    def transacting(self) -> bool:
        """A transaction runs, or waits for its final meter reading."""
        return self.tx is not None or self.stopping is not None

    def idle(self) -> bool:
        return not self.transacting and self.token is None
