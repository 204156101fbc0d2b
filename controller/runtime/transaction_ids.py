"""A transaction's two names: the station's own and the one the CSMS gave it (1.6)."""

from __future__ import annotations

from controller.core.station import Station
from controller.io.records import Records


class TransactionIds:
    def __init__(self, station: Station, csms_ids: dict[str, str], records: Records) -> None:
        self.station = station
        self.csms_ids = csms_ids  # local transaction id -> the CSMS's, for open transactions
        self.records = records

    async def local(self, csms_id: str) -> str | None:
        for evse in self.station.evses.values():
            tx = evse.tx
            if tx is not None and csms_id in (tx.id, self.csms_ids.get(tx.id)):
                return tx.id  # 2.0.1: the station names its transactions itself
        return await self.records.transaction_by_csms_id(csms_id)

    def csms(self, evse_id: int) -> str | None:
        tx = self.station.evses[evse_id].tx
        return self.csms_ids.get(tx.id) if tx is not None else None
