"""The Basic auth password the CSMS set (1.6 AuthorizationKey, 2.0.1 BasicAuthPassword).

Kept out of the database, in a file of mode 0600 in a folder of mode 0700 under
``storage.dir``, and never logged. It replaces ``ocpp.password`` for as long as the
config keeps the password it replaced: a technician who edits the password takes over.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

FOLDER = "credentials"
PASSWORD_FILE = "basic-auth.json"


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` atomically to ``path`` with mode 0600 (folder 0700)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    temp = path.with_name(f".{path.name}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class Credentials:
    """The password in use; a new one stays on trial until a connection with it succeeds.

    Whitepaper 1.6 / 2.0.1 A01: after accepting a new password the station reconnects with it.
    Should the CSMS refuse it (HTTP 401), the one it replaced is tried next, and so on at each
    refusal. A connection with the new one confirms it (the previous one is forgotten). One with
    the previous one makes that the one presented first, but keeps the new one as the one tried
    on a refusal: the CSMS may only be slow to store it, and would lock the station out once it
    switches over. A password the CSMS sets later replaces the one not in use.
    """

    def __init__(self, storage_dir: Path, config_password: str) -> None:
        self.path = storage_dir / FOLDER / PASSWORD_FILE
        self.config_password = config_password
        self._other_next = False  # the password in use was refused: try the other one

    def _read(self) -> dict[str, str] | None:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            if data.get("replaces") == _digest(self.config_password):
                kept = {"password": str(data["password"])}
                if "previous" in data:
                    kept["previous"] = str(data["previous"])
                    if data.get("in_use") == "previous":
                        kept["in_use"] = "previous"
                return kept
        except FileNotFoundError:
            pass
        except (OSError, ValueError, KeyError, AttributeError) as exc:
            log.error("stored Basic auth password %s unreadable (%s); using ocpp.password", self.path, exc)
        return None

    def password(self) -> str:
        """The password to present on the next connection."""
        data = self._read()
        if data is None:
            return self.config_password
        if "previous" not in data:
            return data["password"]
        previous = data.get("in_use") == "previous"
        return data["previous"] if previous != self._other_next else data["password"]

    def set_password(self, password: str) -> None:
        """Raises OSError when it cannot be stored (the caller answers Rejected)."""
        self._write(password, self.password())
        self._other_next = False

    def _write(self, password: str, previous: str | None, in_use_previous: bool = False) -> None:
        data = {"password": password, "replaces": _digest(self.config_password)}
        if previous is not None and previous != password:
            data["previous"] = previous
            if in_use_previous:
                data["in_use"] = "previous"
        write_private(self.path, json.dumps(data).encode())

    def refused(self) -> None:
        """The CSMS refused the password presented (HTTP 401)."""
        data = self._read()
        if data is not None and "previous" in data:
            self._other_next = not self._other_next
            which = "the previous" if self.password() == data["previous"] else "the new"
            log.warning("the CSMS refused the Basic auth password; trying %s one", which)

    def connected(self, password: str) -> None:
        """A connection presenting ``password`` was accepted: it is the one the CSMS knows."""
        data = self._read()
        self._other_next = False
        if data is None or "previous" not in data:
            return
        try:
            if password == data["password"]:
                self._write(password, None)
            elif password == data["previous"] and data.get("in_use") != "previous":
                log.warning(
                    "the CSMS accepted the previous Basic auth password: it stays in use, and the new "
                    "one is tried should the CSMS refuse it"
                )
                self._write(data["password"], password, in_use_previous=True)
        except OSError as exc:
            log.error("Basic auth password state not stored: %s", exc)
