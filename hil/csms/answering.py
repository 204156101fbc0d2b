"""What the CSMS-side handlers of both OCPP versions share: answers go through the session's
overrides, frames sent are recorded, fixed answers are made into handlers."""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

from ocpp.charge_point import camel_to_snake_case  # type: ignore[import-untyped]
from ocpp.exceptions import OCPPError  # type: ignore[import-untyped]
from ocpp.routing import on  # type: ignore[import-untyped]

from controller.ocpp import ocppj

if TYPE_CHECKING:
    from hil.csms.server import DevCsms
    from hil.csms.session import StationSession

_F = TypeVar("_F", bound=Callable[..., Any])

LOG = logging.getLogger("hil.csms")
# The ocpp package logs every frame, and every malformed one with a traceback; the
# timeline already shows those, so they stay silent unless the app configures logging.
OCPP_LOG = LOG.getChild("ocpp")
OCPP_LOG.addHandler(logging.NullHandler())


def on_call(action: str) -> Callable[[_F], _F]:
    """``ocpp.routing.on`` with a type, so handlers stay typed. Payloads are checked by
    ``StationSession`` with the station's compiled validators (``controller.ocpp.ocppj``): the
    package's own jsonschema check, run on a worker thread, was half of this CSMS's
    work per message when the benchmark replayed a queue."""
    return cast(Callable[[_F], _F], on(action, skip_schema_validation=True))


class ConfiguredError(OCPPError):  # type: ignore[misc]
    """A CALLERROR requested through ``DevCsms.errors``; ``code`` is set per instance."""

    def __init__(self, code: str, description: str) -> None:
        super().__init__(description=description, details={})
        self.code = code


class Wire:
    """The connection handed to the ``ocpp`` ChargePoint: records each frame it sends."""

    def __init__(self, session: StationSession) -> None:
        self._session = session

    async def send(self, message: str) -> None:
        """Record, then send one text frame."""
        self._session._record_out(message)
        await self._session._ws.send(message)


class Answering:
    """What the handlers of both versions share: answers go through the session's overrides."""

    id: str
    _call_result: Any
    _session: StationSession
    _csms: DevCsms

    def _reply(self, action: str, unique_id: str, default: Callable[[dict[str, Any]], dict[str, Any]]) -> Any:
        try:
            reply = self._session._answer(action, unique_id, default)
            error = self._session.schema_error(action, reply, response=True)
            if error is not None:
                raise ConfiguredError(ocppj.ERROR_NAMES[self._session.version][error.kind], error.description)
            return getattr(self._call_result, action)(**camel_to_snake_case(reply))
        except OCPPError:
            raise
        except Exception:
            # The ocpp package turns this into an InternalError CALLERROR; show why.
            LOG.exception("%s: failed to answer %s", self.id, action)
            raise

    def _boot(self, payload: dict[str, Any]) -> dict[str, Any]:
        return {
            "status": self._csms.boot_status,
            "currentTime": self._csms.now(),
            "interval": self._csms.heartbeat_interval,
        }


def fixed_handler(action: str, answer: dict[str, Any]) -> Callable[..., Any]:
    def handler(self: Answering, call_unique_id: str, **_: Any) -> Any:
        return self._reply(action, call_unique_id, lambda p: copy.deepcopy(answer))

    # The ocpp package finds handlers by attribute name, so each needs its own.
    handler.__name__ = handler.__qualname__ = f"on_{action}"
    return on_call(action)(handler)
