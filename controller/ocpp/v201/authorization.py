"""OCPP 2.0.1 authorization (C) and the local authorization list (D)."""

from __future__ import annotations

import logging
from typing import Any

from controller.core import authorization as auth
from controller.io.link import Reply
from controller.ocpp.v201 import transactions as tx201
from controller.ocpp.v201.base import Base201

log = logging.getLogger(__name__)


class Authorization(Base201):
    """Authorize, ClearCache, GetLocalListVersion, SendLocalList."""

    def _authorize_payload(self, token: str) -> dict[str, Any]:
        return {"idToken": tx201.id_token(token, self.tx.token_types.get(token, "ISO14443"))}

    def _authorize_info(self, reply: dict[str, Any]) -> auth.IdTagInfo:
        return auth.info_from_ocpp201(reply["idTokenInfo"])

    async def _clear_cache(self, p: dict[str, Any]) -> Reply:
        if not self._flag("AuthCacheCtrlr", "Enabled"):
            return Reply({"status": "Rejected"})
        await self.host.clear_auth_cache()
        return Reply({"status": "Accepted"})

    async def _get_local_list_version(self, p: dict[str, Any]) -> Reply:
        # D02.FR.03: 0 while the local list is disabled; D02.FR.02: 0 when none was sent.
        if not self._flag("LocalAuthListCtrlr", "Enabled"):
            return Reply({"versionNumber": 0})
        return Reply({"versionNumber": self.host.local_list.version})

    async def _send_local_list(self, p: dict[str, Any]) -> Reply:
        if not self._flag("LocalAuthListCtrlr", "Enabled"):
            return Reply({"status": "Failed"})
        if p["versionNumber"] <= 0:
            # D01.FR.18: versionNumber SHALL be greater than 0 (0 means "no list installed").
            log.warning("SendLocalList refused: versionNumber %s is not greater than 0", p["versionNumber"])
            return Reply({"status": "Failed"})
        entries = p.get("localAuthorizationList", [])
        return await self._local_list(
            p["updateType"], p["versionNumber"], lambda: auth.entries_from_ocpp201(entries)
        )
