"""The OCPP client as the station's services reach it: built after them, absent standalone."""

from __future__ import annotations

from controller.ocpp.host import OcppSide


class OcppRef:
    def __init__(self, configured: bool) -> None:
        self.configured = configured  # an [ocpp] table: the client exists once start-up built it
        self.client: OcppSide | None = None

    @property
    def online(self) -> bool:
        return self.client is not None and self.client.online

    @property
    def queues_records(self) -> bool:
        """Whether transaction records carry a 1.6 outbox body (2.0.1 queues its own events)."""
        return self.client is not None and self.client.queues_records

    def outbox_changed(self) -> None:
        if self.client is not None:
            self.client.outbox_changed()
