"""OCPP 2.0.1 power cuts during a transaction, end to end.

The daemon runs as a subprocess on simulated hardware against the development CSMS
speaking 2.0.1 only, and is killed (SIGKILL) to stand for a power cut: a transaction open
at the kill is ended once, as PowerLoss, at the next start. Every test checks the
TransactionEvents it caused: each one is valid against the official schema, seqNo runs
0, 1, 2, ... per transaction without a gap, one Started first, at most one Ended last.
The rest of blocks C, D, E and F (authorization, local list, transactions, remote
control, offline behaviour) runs in-process in test_inproc_ocpp201_tx.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from tests import ocpp_harness
from tests.ocpp201_helpers import check_events, energy, reasons
from tests.ocpp_harness import TOKEN, Bench, eventually
from tests.ocpp_helpers import outbox_empty

# The bench's fixtures, under their own names (imported names shadowed by parameters upset ruff).
bench201 = ocpp_harness.bench201
csms201 = ocpp_harness.csms201
timeline201 = ocpp_harness.timeline201  # prints the timeline and daemon log of a failed test
set_variables = ocpp_harness.set_variables


# -- helpers ---------------------------------------------------------------------------------


def no_call(
    bench: Bench,
    action: str,
    after: int,
    seconds: float,
    where: Callable[[dict[str, Any]], bool] | None = None,
) -> None:
    """Assert that the station sends no (matching) ``action`` for ``seconds``."""
    with pytest.raises(TimeoutError):
        bench.wait(action, where, timeout=seconds, after=after)


def plug_and_swipe(bench: Bench, token: str = TOKEN, charge: bool = True) -> None:
    rig = bench.sim()
    rig.plug(1)
    rig.swipe(token)
    if charge:
        rig.charge(1, max_current_a=16)


# -- F01/F02: RequestStartTransaction ------------------------------------------------------------


def start_session(bench: Bench, token: str = TOKEN) -> dict[str, Any]:
    """Plug in, swipe and charge on EVSE 1; returns the Started TransactionEvent once charging."""
    mark = bench.mark()
    plug_and_swipe(bench, token)
    started = bench.event("Started", after=mark)
    bench.sim().wait_until(lambda s: s["contactor_closed"], timeout=10)
    return started


# -- power loss ----------------------------------------------------------------------------------


def test_e_power_loss_during_transaction_ended_once_as_power_loss(bench201: Bench) -> None:
    set_variables(bench201, ("SampledDataCtrlr", "TxUpdatedInterval", "1"))
    tx_id = start_session(bench201)["transactionInfo"]["transactionId"]
    bench201.event("Updated", lambda p: p["triggerReason"] == "MeterValuePeriodic")
    bench201.kill()
    before = check_events(bench201)[tx_id]
    last_energy = max(energy(e) for e in before if "meterValue" in e)
    mark = bench201.mark()
    bench201.start()
    ended = bench201.event("Ended", lambda p: p["transactionInfo"]["transactionId"] == tx_id, after=mark)
    assert reasons(ended) == ("AbnormalCondition", "PowerLoss")
    assert ended["offline"] is True
    assert energy(ended, "Transaction.End") >= last_energy
    time.sleep(2.0)
    # An event answered just before the kill may come again (its removal from the outbox
    # was not committed yet): at least once, same seqNo, same body.
    history = check_events(bench201, retries=True)[tx_id]  # seqNo goes on without a gap
    assert history[: len(before)] == before
    assert history[-1] == ended
    assert ended["seqNo"] == len(history) - 1 >= len(before)
    recorded = bench201.csms.transactions201[tx_id]
    assert recorded["ended_count"] == 1 and recorded["duplicates"] <= 1
    # The EV is still there, nobody presented a card: nothing new starts.
    assert [t for t in check_events(bench201, retries=True) if t != tx_id] == []
    assert not bench201.sim().status(1)["contactor_closed"]
    # Exactly once: another crash and start sends nothing more for it.
    eventually(lambda: outbox_empty(bench201), 5, "the outbox to drain")
    bench201.kill()
    mark = bench201.mark()
    bench201.start()
    no_call(bench201, "TransactionEvent", mark, 1.5)
    assert bench201.csms.transactions201[tx_id]["ended_count"] == 1


def test_e_power_loss_before_authorization_ev_connected_start_point(bench201: Bench) -> None:
    """A transaction that began at plug-in (no station transaction yet) is ended as PowerLoss too."""
    set_variables(bench201, ("TxCtrlr", "TxStartPoint", "EVConnected"))
    mark = bench201.mark()
    bench201.sim().plug(1)
    tx_id = bench201.event("Started", after=mark)["transactionInfo"]["transactionId"]
    eventually(lambda: outbox_empty(bench201), 5, "the outbox to drain")
    bench201.kill()
    mark = bench201.mark()
    bench201.start()
    ended = bench201.event("Ended", lambda p: p["transactionInfo"]["transactionId"] == tx_id, after=mark)
    assert reasons(ended) == ("AbnormalCondition", "PowerLoss")
    assert ended["seqNo"] == 1 and ended["offline"] is True
    time.sleep(1.0)
    history = check_events(bench201)
    assert [e["eventType"] for e in history[tx_id]] == ["Started", "Ended"]
    assert bench201.csms.transactions201[tx_id]["ended_count"] == 1


def test_e_power_loss_ended_carries_the_last_meter_reading(bench201: Bench) -> None:
    """The energy charged since the last TransactionEvent is not lost: the PowerLoss Ended
    reports the meter as the station finds it at restart (as its own record does)."""
    tx_id = start_session(bench201)["transactionInfo"]["transactionId"]
    time.sleep(3.0)  # about 10 Wh, no event meanwhile (TxUpdatedInterval is 60 s)
    charged = bench201.sim().status(1)["energy_wh"]
    assert charged > 5.0
    bench201.kill()
    mark = bench201.mark()
    bench201.start()
    ended = bench201.event("Ended", lambda p: p["transactionInfo"]["transactionId"] == tx_id, after=mark)
    assert reasons(ended) == ("AbnormalCondition", "PowerLoss")
    meter_now = bench201.sim().status(1)["energy_wh"]
    stored = bench201.db("SELECT meter_stop_wh FROM transactions WHERE id = ?", tx_id)
    assert stored and stored[0][0] == pytest.approx(meter_now, abs=0.2)
    assert energy(ended, "Transaction.End") == pytest.approx(meter_now, abs=0.2)
    check_events(bench201)
