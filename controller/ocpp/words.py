"""The station core's answers that both OCPP versions give in the same words:
ChangeAvailability and ReserveNow (1.6 AvailabilityStatus and ReservationStatus,
2.0.1 ChangeAvailabilityStatusEnumType and ReserveNowStatusEnumType)."""

from __future__ import annotations

from controller.core.model import AvailabilityChange, ReservationResult

AVAILABILITY_STATUSES: dict[AvailabilityChange, str] = {
    AvailabilityChange.ACCEPTED: "Accepted",
    AvailabilityChange.SCHEDULED: "Scheduled",
}
RESERVATION_STATUSES: dict[ReservationResult, str] = {
    ReservationResult.ACCEPTED: "Accepted",
    ReservationResult.FAULTED: "Faulted",
    ReservationResult.OCCUPIED: "Occupied",
    ReservationResult.UNAVAILABLE: "Unavailable",
    ReservationResult.REJECTED: "Rejected",
}
