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
    def __init__(self, storage_dir: Path, config_password: str) -> None:
        self.path = storage_dir / FOLDER / PASSWORD_FILE
        self.config_password = config_password

    def password(self) -> str:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            if data.get("replaces") == _digest(self.config_password):
                return str(data["password"])
        except FileNotFoundError:
            pass
        except (OSError, ValueError, KeyError, AttributeError) as exc:
            log.error("stored Basic auth password %s unreadable (%s); using ocpp.password", self.path, exc)
        return self.config_password

    def set_password(self, password: str) -> None:
        """Raises OSError when it cannot be stored (the caller answers Rejected)."""
        body = json.dumps({"password": password, "replaces": _digest(self.config_password)})
        write_private(self.path, body.encode())
