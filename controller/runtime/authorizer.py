"""Authorization: the local list and cache, the CSMS, or the offline rules decide."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from controller.core import authorization as auth
from controller.core.station import Action, Station
from controller.io import storage as store
from controller.io.database import Database, WriteQueue
from controller.io.storage import StorageError
from controller.runtime.ocpp_ref import OcppRef

log = logging.getLogger(__name__)


class Authorizer:
    def __init__(
        self,
        station: Station,
        local_list: auth.LocalList,
        cache: auth.AuthCache,
        now: Callable[[], datetime],
        apply: Callable[[list[Action]], None],
        database: Database,
        writes: WriteQueue,
        ocpp: OcppRef,
    ) -> None:
        self.station = station
        self.local_list = local_list
        self.cache = cache
        self.now = now
        self.apply = apply
        self.database = database
        self.writes = writes
        self.ocpp = ocpp

    async def authorize_token(self, token: str) -> auth.IdTagInfo | None:
        """Decide for ``token``: local list and cache, the CSMS, or the offline rules."""
        client = self.ocpp.client
        settings = client.auth_settings() if client else auth.AuthSettings()
        now = self.now()
        online = client is not None and client.online
        decision = auth.decide(token, now, online, self.local_list, self.cache, settings)
        if decision.outcome == "ask" and client is not None:
            info: auth.IdTagInfo | None = await client.authorize(token)
            if info is not None:
                if settings.auth_cache_enabled:
                    self.cache_id_tag(token, info)
                return info
            decision = auth.decide(token, now, False, self.local_list, self.cache, settings)
        if decision.source == auth.SOURCE_CACHE:  # a use: LifeTime starts again, after a restart too
            self.writes.put(lambda storage: store.touch_cache_entry(storage, token, now))
        if decision.outcome == "accept":
            log.info("token %s accepted locally (%s)", token, decision.source)
            return decision.info or auth.IdTagInfo("Accepted")
        if decision.info is not None:
            return decision.info
        return auth.IdTagInfo("Invalid")

    def token_presented(self, token: str) -> None:
        """A token at the station's reader."""
        log.info("token %s presented", token)
        self.apply(self.station.token_presented(self.now(), token))

    async def authorize_presented(self, token: str) -> None:
        # The status decides: an expiry date in the CSMS's answer only says when the
        # cache entry lapses (a local entry comes with its expiry already applied).
        info = await self.authorize_token(token)
        accepted = info is not None and info.status == "Accepted"
        reason = f"the CSMS says {info.status if info else 'nothing'}"
        self.apply(
            self.station.token_authorized(self.now(), token, accepted, info.parent if info else None, reason)
        )

    def cache_id_tag(self, token: str, info: auth.IdTagInfo) -> None:
        now = self.now()
        self.cache.update(token, info, now)
        self.writes.put(
            lambda storage: store.save_cache_entry(storage, token, info, now, self.cache.capacity)
        )

    def id_tag_info(self, tx_id: str, token: str, info: auth.IdTagInfo) -> None:
        """The CSMS's verdict on a transaction's id tag (StartTransaction answer)."""
        if self.station.unidentified(tx_id):
            # E05 is about ids the station asked about: this one it charges without.
            if info.status != "Accepted":
                log.info("transaction %s: the CSMS says %s; it needs no id and goes on", tx_id, info.status)
            return
        client = self.ocpp.client
        if client is not None and client.auth_settings().auth_cache_enabled and token:
            self.cache_id_tag(token, info)
        if info.status == "Accepted":
            if info.parent is not None:
                self.station.adopt_parent(tx_id, info.parent)
            return
        outcome = self.station.deauthorized(self.now(), tx_id)
        if outcome:
            what = "transaction stopped" if outcome == "stopped" else "energy stops, the transaction goes on"
            log.warning("transaction %s: id tag %s is %s; %s", tx_id, token, info.status, what)
            self.apply(self.station.drain())

    async def clear_cache(self) -> None:
        self.cache.clear()
        await self.database.run(store.clear_cache, self.database.storage)

    async def update_local_list(
        self, update_type: str, version: int, entries: list[tuple[str, auth.IdTagInfo | None]]
    ) -> str:
        status = self.local_list.check(update_type, version, entries)
        if status != "Accepted":
            return status
        try:
            await self.database.run(
                store.save_local_list, self.database.storage, update_type, version, entries
            )
        except StorageError as exc:
            log.error("local authorization list not saved: %s", exc)
            return "Failed"
        return self.local_list.apply(update_type, version, entries)
