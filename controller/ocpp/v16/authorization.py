"""OCPP 1.6 authorization, the authorization cache and the local authorization list."""

from __future__ import annotations

from typing import Any

from controller.core import authorization as auth
from controller.io.link import Reply
from controller.ocpp.v16.base import Base16


class Authorization(Base16):
    """Authorize, ClearCache, GetLocalListVersion, SendLocalList."""

    def _authorize_payload(self, token: str) -> dict[str, Any]:
        return {"idTag": token}

    def _authorize_info(self, reply: dict[str, Any]) -> auth.IdTagInfo:
        return auth.info_from_ocpp16(reply["idTagInfo"])

    async def _clear_cache(self, p: dict[str, Any]) -> Reply:
        await self.host.clear_auth_cache()
        return Reply({"status": "Accepted"})

    async def _get_local_list_version(self, p: dict[str, Any]) -> Reply:
        if not self.keys.flag("LocalAuthListEnabled"):
            return Reply({"listVersion": -1})
        return Reply({"listVersion": self.host.local_list.version})

    async def _send_local_list(self, p: dict[str, Any]) -> Reply:
        if not self.keys.flag("LocalAuthListEnabled"):
            return Reply({"status": "NotSupported"})
        entries = p.get("localAuthorizationList", [])
        if len(entries) > self.keys.number("SendLocalListMaxLength"):
            return Reply({"status": "Failed"})
        return await self._local_list(
            p["updateType"], p["listVersion"], lambda: auth.entries_from_ocpp16(entries)
        )
