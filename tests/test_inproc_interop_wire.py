"""Liberal in what the station accepts, in-process (``tests.inproc``; moved from
test_interop_wire.py): a CALL with a naive date-time from the CSMS, and a NotifyEvent the
CSMS refuses. The schema checks themselves, a CSMS whose answers are naive (a websocket
server of its own) and eventIds across a kill -9 stay in test_interop_wire.py.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from tests.inproc import Bench, station, virtual_now

# -- CALLs from the development CSMS -------------------------------------------------------------


@station()
async def test_reserve_now_with_a_naive_expiry_date_is_accepted(b: Bench) -> None:
    """1.6 ReserveNow (TC_046-style reservation) from a CSMS that sends local naive times."""
    expiry = (virtual_now() + timedelta(hours=1)).replace(tzinfo=None).isoformat()  # UTC, no offset
    reply = await b.call(
        "ReserveNow", {"connectorId": 1, "expiryDate": expiry, "idTag": "A", "reservationId": 7}
    )
    assert reply == {"status": "Accepted"}
    await b.status(1, "Reserved")
    text = b.log.read_text()
    assert "ReserveNow from the CSMS: expiryDate" in text and "taken as UTC" in text


# -- NotifyEvent eventIds (2.0.1) ---------------------------------------------------------


def event_ids(b: Bench, after: int = 0) -> list[int]:
    return [item["eventId"] for entry in b.calls("NotifyEvent")[after:] for item in entry["eventData"]]


@station(version="2.0.1")
async def test_n07_refused_notify_event_is_retried_then_dropped(b: Bench) -> None:
    """A NotifyEvent the CSMS answers with a CALLERROR is sent 3 times in all, then dropped
    with an error in the journal: not re-sent after the next reconnect."""
    b.csms.set_error("NotifyEvent", ("InternalError", "eventId already stored"))
    mark = len(b.calls("NotifyEvent"))
    b.sim.fault("rcd")
    await b.eventually(lambda: len(event_ids(b, mark)) >= 3, timeout=20, what="three attempts")
    ids = event_ids(b, mark)
    assert len(set(ids)) == 1, ids
    await b.eventually(
        lambda: "dropped after 3 attempts" in b.log.read_text(), timeout=5, what="journal entry"
    )
    b.csms.set_error("NotifyEvent", None)
    reconnect = b.mark()
    await b.csms.disconnect("CP001")
    await b.eventually(
        lambda: any(e.kind == "connect" for e in b.csms.timeline[reconnect:]),
        timeout=30,
        what="reconnect",
    )
    trigger = b.mark()
    await b.eventually(
        lambda: b.call("TriggerMessage", {"requestedMessage": "Heartbeat"}), timeout=20, what="online"
    )
    await b.wait("Heartbeat", after=trigger)
    await asyncio.sleep(1.0)
    assert event_ids(b, mark) == ids  # nothing re-sent
