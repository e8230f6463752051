"""A tier's database target: parsed from a URL, compared, masked, turned into libpq settings."""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass, field, replace
from urllib.parse import quote, urlsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from dbguard.errors import Refused
from dbguard.guard.masking import MASK, mask_text, remember_secret
from dbguard.guard.tiers import Tier

POSTGRES_SCHEMES = {"postgresql", "postgres"}
LOCAL_HOSTS = {"", "localhost", "127.0.0.1", "::1", "[::1]"}
TLS_MODES = {"require", "verify-ca", "verify-full"}
_SCHEME = re.compile(r"^(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*)://")
EXAMPLE_URL = "postgresql://user:***@host:5432/dbname"


@dataclass(frozen=True)
class Target:
    """Where one tier's database lives. `params` are libpq keywords, password included."""

    tier: Tier
    params: dict[str, str] = field(hash=False)
    source: str  # the variable it came from, or "embedded default"
    embedded: bool = False

    @property
    def dbname(self) -> str:
        return self.params.get("dbname", "")

    @property
    def user(self) -> str:
        return self.params.get("user", "")

    @property
    def host(self) -> str:
        return self.params.get("host", "") or self.params.get("hostaddr", "")

    @property
    def port(self) -> int:
        return int(self.params.get("port") or 5432)

    @property
    def password(self) -> str | None:
        return self.params.get("password")

    @property
    def is_local(self) -> bool:
        host = self.host.lower()
        return host in LOCAL_HOSTS or host.startswith("/") or host.startswith("@")

    @property
    def tls_required(self) -> bool:
        return self.params.get("sslmode", "prefer") in TLS_MODES

    def identity(self) -> tuple[str, int, str]:
        """Host, port and database, with every local spelling (socket, localhost, ::1) folded."""
        host = "local" if self.is_local else self.host.lower()
        return (host, self.port, self.dbname)

    def with_database(self, dbname: str) -> Target:
        """The same server and credentials, another database (maintenance or scratch)."""
        return replace(self, params={**self.params, "dbname": dbname})

    def conninfo(self, *, with_password: bool = True, extra: dict[str, str] | None = None) -> str:
        params = {k: v for k, v in self.params.items() if with_password or k != "password"}
        params.update(extra or {})
        return make_conninfo("", **params)

    def url(self) -> str:
        """The full URL, password included: for handing to our own settings, never for printing."""
        userinfo = quote(self.user, safe="")
        if self.password:
            userinfo += ":" + quote(self.password, safe="")
        query = {k: v for k, v in self.params.items() if k not in {"user", "password", "dbname"}}
        at = f"{userinfo}@" if userinfo else ""
        return f"postgresql://{at}/{quote(self.dbname, safe='')}?" + "&".join(
            f"{k}={quote(v, safe='/')}" for k, v in query.items()
        )

    def masked(self) -> str:
        """postgresql://user:***@host:port/db?sslmode=... — safe to print anywhere."""
        userinfo = quote(self.user, safe="")
        if self.password:
            userinfo += ":" + MASK
        host = self.host
        query: dict[str, str] = {
            k: v for k, v in self.params.items() if k not in {"user", "password", "host", "port", "dbname"}
        }
        netloc = ""
        if host and not host.startswith("/"):
            netloc = f"[{host}]" if ":" in host and not host.startswith("[") else host
            netloc += f":{self.port}"
        elif host:
            query = {"host": host, "port": str(self.port), **query}
        at = f"{userinfo}@" if userinfo else ""
        qs = "&".join(f"{k}={v}" for k, v in query.items())
        return mask_text(f"postgresql://{at}{netloc}/{self.dbname}" + (f"?{qs}" if qs else ""))

    def short(self) -> str:
        """A compact label for tables: the masked URL, or 'embedded:<db>' for the local cluster."""
        return f"embedded:{self.dbname}" if self.embedded else self.masked()

    def describe(self) -> str:
        suffix = " (embedded default)" if self.embedded else ""
        return self.masked() + suffix


def parse_database_url(url: str, *, tier: Tier, source: str) -> Target:
    """Parse a PostgreSQL URL (postgresql://, postgres://, postgresql+driver://) into a Target.

    Every refusal names the variable and never repeats the URL's password.
    """
    url = url.strip()
    match = _SCHEME.match(url)
    if not match:
        raise Refused(f"{source} is not a database URL", f"set {source} to a URL like {EXAMPLE_URL} in .env")
    scheme = match.group("scheme").lower()
    if scheme.split("+", 1)[0] not in POSTGRES_SCHEMES:
        raise Refused(
            f"{source} uses the scheme '{scheme}': only PostgreSQL databases are supported",
            f"set {source} to a URL like {EXAMPLE_URL}",
        )
    normalised = "postgresql://" + url[match.end() :]
    with contextlib.suppress(ValueError):
        remember_secret(urlsplit(normalised).password)
    try:
        params = conninfo_to_dict(normalised)
    except psycopg.ProgrammingError as exc:
        reason = mask_text(str(exc).strip().splitlines()[0] if str(exc).strip() else "unparseable")
        raise Refused(f"{source} is malformed ({reason})", f"fix {source}; the form is {EXAMPLE_URL}") from None
    clean = {k: str(v) for k, v in params.items() if v is not None and str(v) != ""}
    remember_secret(clean.get("password"))
    if not clean.get("dbname"):
        raise Refused(f"{source} names no database", f"add the database name: {EXAMPLE_URL}")
    if "port" in clean and not clean["port"].isdigit():
        raise Refused(f"{source} has a port that is not a number", f"fix {source}; the form is {EXAMPLE_URL}")
    return Target(tier=tier, params=clean, source=source)
