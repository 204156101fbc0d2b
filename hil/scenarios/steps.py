"""Steps more than one scenario file takes."""

from __future__ import annotations

from hil.conftest import TOKEN
from hil.rig import Rig
from hil.view import CsmsView


def charging(rig: Rig, view: CsmsView) -> tuple[str, int]:
    """Plug, swipe, charge until the contactor closes; the transaction id and the timeline
    mark from before it."""
    mark = view.mark()
    rig.plug()
    rig.swipe(TOKEN)
    rig.charge()
    tx = view.started(after=mark)
    rig.expect(lambda m: m.contactor_closed, what="contactor closed")
    return tx, mark
