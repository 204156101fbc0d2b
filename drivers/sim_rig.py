"""The rig protocol (CONTRACTS section 3): requests -> replies over a ``SimBench``.

``Rig.reply_to`` is pure line -> reply logic over the simulated world and a status
callback; the safety process (``controller.safety.rig_server``) puts it on the rig
socket. Any malformed line gets an error reply: nothing a client sends can end a process.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from typing import Any

from controller.safety.pilot import CpState
from drivers.sim import SIM_FAULTS, SimBench, SimEvse

log = logging.getLogger(__name__)

MAX_LINE = 64 * 1024
StatusFn = Callable[[int | None], dict[str, Any]]


class RigError(Exception):
    pass


def _field(
    request: dict[str, Any],
    name: str,
    kind: type | tuple[type, ...],
    default: Any = None,
    required: bool = False,
) -> Any:
    if name not in request:
        if required:
            raise RigError(f"missing field {name!r}")
        return default
    value = request[name]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        raise RigError(f"bad field {name!r}: {value!r}")
    return value


class Rig:
    def __init__(
        self, bench: SimBench | None, status: StatusFn, evse_ids: list[int], reader: bool = True
    ) -> None:
        self.bench = bench
        self.reader = reader  # a simulated RFID reader is configured
        self.status = status
        self.evse_ids = evse_ids

    def _evse_id(self, request: dict[str, Any]) -> int:
        evse_id = _field(request, "evse", int, required=True)
        if evse_id not in self.evse_ids:
            raise RigError(f"unknown evse {evse_id}; this station has {self.evse_ids}")
        return int(evse_id)

    def _sim(self, request: dict[str, Any]) -> SimEvse:
        evse_id = self._evse_id(request)
        if self.bench is None or evse_id not in self.bench.evses:
            raise RigError(f"evse {evse_id} is not simulated")
        return self.bench.evses[evse_id]

    def handle(self, request: Any) -> dict[str, Any]:
        if not isinstance(request, dict):
            raise RigError("a request must be a JSON object")
        cmd = request.get("cmd")
        handler = getattr(self, f"_cmd_{cmd}", None) if isinstance(cmd, str) else None
        if handler is None:
            raise RigError(f"unknown command {cmd!r}")
        reply: dict[str, Any] = handler(request)
        return {"ok": True, **reply}

    def _cmd_plug(self, request: dict[str, Any]) -> dict[str, Any]:
        self._changed(self._sim(request), plugged=True, requesting=False)
        return {}

    def _cmd_charge(self, request: dict[str, Any]) -> dict[str, Any]:
        sim = self._sim(request)
        amps = _field(request, "max_current_a", (int, float), 32)
        phases = _field(request, "phases", int, sim.phases)
        if not 0 < amps <= 80:
            raise RigError(f"bad field 'max_current_a': {amps!r} (0 < A <= 80)")
        if phases not in (1, 2, 3) or phases > sim.phases:
            raise RigError(f"bad field 'phases': {phases!r} (1..{sim.phases})")
        self._changed(sim, plugged=True, requesting=True, max_current_a=float(amps), phases=phases)
        return {}

    def _cmd_suspend(self, request: dict[str, Any]) -> dict[str, Any]:
        self._changed(self._sim(request), requesting=False)
        return {}

    def _cmd_unplug(self, request: dict[str, Any]) -> dict[str, Any]:
        self._changed(self._sim(request), plugged=False, requesting=False)
        return {}

    def _cmd_cp(self, request: dict[str, Any]) -> dict[str, Any]:
        sim = self._sim(request)
        state = _field(request, "state", (str, type(None)), required=True)
        if state is not None and state not in CpState.__members__:
            raise RigError(f"bad field 'state': {state!r} (A..F or null)")
        sim.force_cp(CpState(state) if state else None)
        return {}

    def _cmd_swipe(self, request: dict[str, Any]) -> dict[str, Any]:
        token = _field(request, "id", str, required=True)
        if not re.fullmatch(r"[0-9A-F]{1,36}", token):
            raise RigError(f"bad field 'id': {token!r} (uppercase hex, as a reader reports it)")
        if self.bench is None or not self.reader:
            raise RigError('this station has no simulated RFID reader: add [rfid] driver = "sim"')
        self.bench.on_swipe(token)
        return {}

    def _cmd_fault(self, request: dict[str, Any]) -> dict[str, Any]:
        sim = self._sim(request)
        kind = _field(request, "kind", str, required=True)
        if kind not in SIM_FAULTS:
            raise RigError(f"bad field 'kind': {kind!r} (one of {', '.join(SIM_FAULTS)})")
        if kind == "lock_jam" and not sim.lock_fitted:
            raise RigError(
                f'evse {sim.evse_id} has no simulated connector lock: add lock = {{ driver = "sim" }}'
            )
        sim.set_fault(kind, _field(request, "active", bool, True))
        return {}

    def _cmd_status(self, request: dict[str, Any]) -> dict[str, Any]:
        if "evse" not in request:
            return self.status(None)
        return self.status(self._evse_id(request))

    def _cmd_timing(self, request: dict[str, Any]) -> dict[str, Any]:
        sim = self._sim(request)
        with sim.lock:
            return {
                "cp_state": sim.cp_state().value,
                "cp_changed_at": sim.cp_changed_at,
                "contactor_command": sim.contactor_command,
                "contactor_commanded_at": sim.contactor_commanded_at,
                # the simulated connector lock, when fitted: where it physically is
                "lock_engaged": sim.lock_engaged if sim.lock_fitted else None,
            }

    def _changed(self, sim: SimEvse, **ev: Any) -> None:
        sim.set_ev(**ev)
        if self.bench is not None:
            self.bench.save()

    def reply_to(self, line: bytes) -> dict[str, Any]:
        try:
            request = json.loads(line)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            return {"ok": False, "error": f"malformed JSON: {str(exc)[:200]}"}
        try:
            return self.handle(request)
        except RigError as exc:
            return {"ok": False, "error": str(exc)}
        except Exception as exc:
            log.exception("rig request %r failed", request)
            return {"ok": False, "error": f"internal error: {type(exc).__name__}: {exc}"}
