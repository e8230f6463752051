"""The export file's signature: what lets db.import-user believe the manifest's claims (tier, sanitized).

What must always hold: db.export-user signs manifest.json's exact bytes (which carry every data member's
sha256 and row count, so the rows are covered too) with HMAC-SHA256 under this machine's key, EXPORT_KEY_FILE
in the git-ignored private state folder (made, mode 0600, on first use, like the sanitize salt). The import
believes nothing in a manifest before its signature is checked:
- signed with this machine's key and matching: the manifest is believed;
- signed with this key but not matching (the manifest was edited), or not signed at all: refused, nothing read
  into the target; the fix is a fresh export;
- signed with another key (a file exported on another machine): its claims cannot be checked, so it is treated
  as a raw PROD export: only a human at an interactive terminal, typing the target's name, brings it in
  (the policy row import-foreign-file); an agent or a script is refused.
The key is a speed bump against an agent's edit of the tar, not a wall: a process that can read the key file
can sign. As with the ladder report's key (ladder/gate.py), a key's id says which key signed, never the key.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path
from typing import Any

from dbguard.errors import Refused
from dbguard.guard.masking import remember_secret
from dbguard.settings import Settings

KEY_SETTING = "EXPORT_KEY_FILE"
KEY_MIN_LENGTH = 32
_MAC_PREFIX = "hmac-sha256:"


def local_key(settings: Settings) -> bytes:
    """This machine's export key: EXPORT_KEY_FILE, made (0600, 32 random bytes as hex) when missing."""
    path = settings.path(KEY_SETTING)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # made by another run just now
        else:
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_hex(32) + "\n")
    try:
        value = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise Refused(f"{KEY_SETTING} {path} cannot be read ({exc})", f"make {path} readable, or remove it") from None
    if len(value) < KEY_MIN_LENGTH:
        raise Refused(
            f"{KEY_SETTING} {path} holds {len(value)} characters, at least {KEY_MIN_LENGTH} needed",
            f"remove {path}: a new key is made on the next export (files signed with the old one then ask a human)",
        )
    remember_secret(value)
    return value.encode()


def key_id(key: bytes) -> str:
    """A name for the key that says nothing about it (to tell 'another machine' from 'edited')."""
    return hashlib.sha256(b"dbguard export key\0" + key).hexdigest()[:16]


def _mac(manifest_bytes: bytes, key: bytes) -> str:
    return _MAC_PREFIX + hmac.new(key, b"dbguard-user-export/1\0" + manifest_bytes, hashlib.sha256).hexdigest()


def signer(settings: Settings) -> Any:
    """The `sign` write_export takes: manifest bytes -> manifest.sig's contents."""
    key = local_key(settings)

    def sign(manifest_bytes: bytes) -> dict[str, Any]:
        return {"key_id": key_id(key), "mac": _mac(manifest_bytes, key)}

    return sign


def check(settings: Settings, path: Path, manifest_bytes: bytes, signature: dict[str, Any] | None) -> bool:
    """True: signed here and untouched. False: signed on another machine (a human must vouch for it).
    Refused: not signed, or changed since it was signed."""
    fix = f"export it again on this machine: invoke db.export-user --env <tier> --user <key> --out {path.name}"
    mac = signature.get("mac") if signature else None
    if not isinstance(mac, str) or not mac.startswith(_MAC_PREFIX):
        raise Refused(f"{path.name} is not signed (no manifest.sig): its tier and sanitizing cannot be checked", fix)
    key = local_key(settings)
    if signature is not None and signature.get("key_id") != key_id(key):
        return False
    if not hmac.compare_digest(mac, _mac(manifest_bytes, key)):
        raise Refused(f"{path.name}'s manifest was changed after db.export-user wrote it; nothing was imported", fix)
    return True
