"""OCPP 2.0.1 variable monitoring (N): monitors set by the CSMS, and the once-a-second look
at what they watch."""

from __future__ import annotations

from typing import Any

from controller.io.link import Reply
from controller.ocpp.v201 import device_model as dm
from controller.ocpp.v201.base import Base201
from controller.ocpp.v201.monitoring import criteria_supported


class VariableMonitoring(Base201):
    """SetVariableMonitoring, ClearVariableMonitoring, GetMonitoringReport, monitoring base and level."""

    def tick(self) -> None:
        """Once a second: TxEndedInterval samples, custom monitors on non-fault variables."""
        now, data = self.host.now(), []
        self.tx.tick(now)
        faults = set(dm.FAULT_VARIABLES.values())
        for key in self.monitors.monitored():
            definition = self.model.definition(key)
            if definition is None or (definition.component, definition.variable) in faults:
                continue
            value = self.model.actual(key)
            old = self._watched.get(key)
            self._watched[key] = value
            if old != value:  # None: the first look since the start (N07.FR.14)
                data += self.monitors.changed(key, old, value, now)
        if data:
            self.host.spawn(self._notify_event(data))

    async def _set_variable_monitoring(self, p: dict[str, Any]) -> Reply:
        results = [self.monitors.set(item) for item in p["setMonitoringData"]]
        for key in self.monitors.monitored():
            # A Delta counts from the value when the monitor was set.
            self._watched.setdefault(key, self.model.actual(key))
        return Reply({"setMonitoringResult": results})

    async def _clear_variable_monitoring(self, p: dict[str, Any]) -> Reply:
        return Reply({"clearMonitoringResult": self.monitors.clear(p["id"])})

    async def _get_monitoring_report(self, p: dict[str, Any]) -> Reply:
        criteria = p.get("monitoringCriteria", ())
        if not criteria_supported(criteria):
            return Reply({"status": "NotSupported"})  # N02.FR.02, even with others that are supported
        data = self.monitors.report(criteria, p.get("componentVariable", ()))
        return self._report_reply(p["requestId"], data, "NotifyMonitoringReport", "monitor")

    async def _set_monitoring_base(self, p: dict[str, Any]) -> Reply:
        self.monitors.set_base(p["monitoringBase"])
        return Reply({"status": "Accepted"})

    async def _set_monitoring_level(self, p: dict[str, Any]) -> Reply:
        level = self.model.find("MonitoringCtrlr", "ActiveMonitoringLevel")
        if level is None or not 0 <= p["severity"] <= 9:
            return Reply({"status": "Rejected"})
        self.model.set_actual(level.key, str(p["severity"]))
        return Reply({"status": "Accepted"})
