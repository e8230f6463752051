"""The export file: one tar holding `manifest.json` and, per table, its rows in COPY text format.

What must always hold: a file that exists under its final name is complete (written under a hidden
name, fsynced, renamed) and private (mode 0600 from its creation, never widened); every data member's
sha256 and row count are in the manifest, and a reader refuses a file whose members disagree with it.

Members: `manifest.json` first, then `data/<n>.<schema>.<table>.<role>.copy` where role is `owned` (the
user's row and the rows that belong to them) or `reference` (rows those point at: other people,
shared reference data). Each line is one row exactly as `COPY ... TO STDOUT` (text format) wrote it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dbguard.errors import Refused

FORMAT = "dbguard-user-export/1"
MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"  # {"key_id", "mac"}: HMAC-SHA256 of manifest.json's bytes (signing.py)
ROLES = ("owned", "reference")

_UNESCAPE = {ord("b"): "\b", ord("f"): "\f", ord("n"): "\n", ord("r"): "\r", ord("t"): "\t", ord("v"): "\v"}
_ESCAPE = str.maketrans({"\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v"})
NULL = b"\\N"


def decode_field(raw: bytes) -> str | None:
    """One COPY text field as its value's text (None for NULL)."""
    if raw == NULL:
        return None
    if b"\\" not in raw:
        return raw.decode()
    text, out, i = raw.decode(), [], 0
    while i < len(text):
        ch = text[i]
        if ch != "\\" or i + 1 == len(text):
            out.append(ch)
            i += 1
            continue
        nxt = text[i + 1]
        if nxt in "01234567":
            j = i + 1
            while j < len(text) and j < i + 4 and text[j] in "01234567":
                j += 1
            out.append(chr(int(text[i + 1 : j], 8)))
            i = j
        elif nxt == "x" and i + 2 < len(text) and text[i + 2] in "0123456789abcdefABCDEF":
            j = i + 2
            while j < len(text) and j < i + 4 and text[j] in "0123456789abcdefABCDEF":
                j += 1
            out.append(chr(int(text[i + 2 : j], 16)))
            i = j
        else:
            out.append(_UNESCAPE.get(ord(nxt), nxt))
            i += 2
    return "".join(out)


def encode_field(value: str | None) -> bytes:
    """A value's text as one COPY text field."""
    return NULL if value is None else value.translate(_ESCAPE).encode()


def split_lines(data: bytes) -> list[bytes]:
    """COPY text output as one bytes line per row (a row's own newlines are escaped, so a split is safe)."""
    return data.split(b"\n")[:-1] if data else []


@dataclass
class TableData:
    """One table's part of the file: its columns and its owned and reference rows (COPY text lines)."""

    name: str  # schema.table
    columns: tuple[str, ...]
    rows: dict[str, list[bytes]] = field(default_factory=lambda: {role: [] for role in ROLES})
    text: dict[str, bytes] = field(default_factory=dict)  # role -> its rows as one COPY text, instead of `rows`


@dataclass
class ExportFile:
    manifest: dict[str, Any]
    tables: dict[str, TableData]
    manifest_bytes: bytes = b""  # manifest.json as it is in the file: what the signature covers
    signature: dict[str, Any] | None = None  # manifest.sig, None when the file has none


def _member(index: int, table: str, role: str) -> str:
    return f"data/{index:03d}.{table}.{role}.copy"


def write_export(
    path: Path, manifest: dict[str, Any], tables: list[TableData], sign: Callable[[bytes], dict[str, Any]]
) -> dict[str, Any]:
    """Write the file atomically, mode 0600; the manifest gains each member's rows and sha256 (so its
    signature, `sign(manifest bytes)`, vouches for the data too). Returns it."""
    members: list[tuple[str, bytes]] = []
    listed = []
    for index, table in enumerate(tables):
        entry: dict[str, Any] = {"name": table.name, "columns": list(table.columns)}
        for role in ROLES:
            if role in table.text:  # a row's own newlines are escaped: one line per row
                data = table.text[role]
                count = data.count(b"\n")
            else:
                data = b"".join(line + b"\n" for line in table.rows[role])
                count = len(table.rows[role])
            name = _member(index, table.name, role)
            entry[role] = {"member": name, "rows": count, "sha256": hashlib.sha256(data).hexdigest()}
            members.append((name, data))
        listed.append(entry)
    manifest = {**manifest, "format": FORMAT, "tables": listed}
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh, tarfile.open(fileobj=fh, mode="w", format=tarfile.PAX_FORMAT) as tar:
            head = json.dumps(manifest, indent=2).encode()
            signed = json.dumps(sign(head)).encode()
            for name, data in [(MANIFEST, head), (SIGNATURE, signed), *members]:
                info = tarfile.TarInfo(name)
                info.size, info.mode = len(data), 0o600
                tar.addfile(info, io.BytesIO(data))
            tar.close()
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return manifest


def bad_file(path: Path, why: str) -> Refused:
    return Refused(
        f"{path} is not a usable user export ({why})",
        "export it again: invoke db.export-user --env <tier> --user <key> --out FILE",
    )


def read_export(path: Path) -> ExportFile:
    """The file's manifest and rows, each member checked against the manifest's sha256 and row count."""
    if not path.is_file():
        raise Refused(f"no export file at {path}", "pass the file db.export-user wrote: --from FILE")
    try:
        with tarfile.open(path, mode="r:") as tar:
            found = {m.name: m for m in tar.getmembers() if m.isfile()}

            def read(name: str) -> bytes:
                member = found.get(name)
                handle = tar.extractfile(member) if member is not None else None
                if handle is None:
                    raise bad_file(path, f"{name} is missing")
                return handle.read()

            manifest_bytes = read(MANIFEST)
            manifest = json.loads(manifest_bytes)
            signature = json.loads(read(SIGNATURE)) if SIGNATURE in found else None
            if not isinstance(manifest, dict) or not isinstance(signature, dict | None):
                raise bad_file(path, "manifest.json or manifest.sig is not a JSON object")
            if manifest.get("format") != FORMAT:
                raise bad_file(path, f"format {manifest.get('format')!r}, expected {FORMAT}")
            tables: dict[str, TableData] = {}
            for entry in manifest["tables"]:
                table = TableData(str(entry["name"]), tuple(entry["columns"]))
                for role in ROLES:
                    data = read(entry[role]["member"])
                    if hashlib.sha256(data).hexdigest() != entry[role]["sha256"]:
                        raise bad_file(path, f"{entry[role]['member']} does not match its sha256")
                    table.rows[role] = split_lines(data)
                    if len(table.rows[role]) != entry[role]["rows"]:
                        raise bad_file(path, f"{entry[role]['member']} does not hold {entry[role]['rows']} rows")
                tables[table.name] = table
    except (tarfile.TarError, json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise bad_file(path, type(exc).__name__) from None
    return ExportFile(manifest, tables, manifest_bytes, signature)
