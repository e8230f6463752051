"""A tier's database target: parsed from a URL, compared, masked, turned into libpq settings.

What must always hold: a Target names exactly one server. A URL that lets libpq choose among
several (host lists, load balancing, target_session_attrs, a service file) is refused when it is
parsed, so every connection of an operation can reach the server whose stamp the guard checked.
Where a Target is compared (the tiers are different databases) or judged local (TLS, a refresh's
target), it is by the address libpq actually connects to: `hostaddr` where set, every numeric
spelling of an IP address folded into one, every local spelling (sockets, localhost, 127/8, ::1,
::ffff:127.0.0.1) into "local".
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
import socket
from dataclasses import dataclass, field, replace
from urllib.parse import quote, urlsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from dbguard.errors import Refused
from dbguard.guard.masking import MASK, mask_text, remember_secret
from dbguard.guard.tiers import Tier

POSTGRES_SCHEMES = {"postgresql", "postgres"}
LOCAL_NAMES = {"", "localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"}
TLS_MODES = {"require", "verify-ca", "verify-full"}
_SCHEME = re.compile(r"^(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*)://")
_NUMERIC_V4 = re.compile(r"^[0-9a-fx.]+$")  # what inet_aton reads: 127.1, 2130706433, 0x7f.1, 0177.0.0.1
_BAD_PERCENT = re.compile(r"%(?![0-9a-fA-F]{2})")
EXAMPLE_URL = "postgresql://user:***@host:5432/dbname"
# libpq settings that let it pick one of several servers, or read the connection from elsewhere
_ONE_SERVER = "every connection must reach the one server whose tier stamp was checked"


def canonical_address(host: str) -> str:
    """One spelling per address: IPv4 in any numeric form, IPv6 (an IPv4-mapped one as IPv4); names lower-cased."""
    text = host.strip().lower().removeprefix("[").removesuffix("]").removesuffix(".")
    bare = text.split("%", 1)[0]  # an IPv6 zone (fe80::1%eth0) names the interface, not the address
    try:
        address: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(bare)
    except ValueError:
        if not _NUMERIC_V4.match(bare):
            return text
        try:
            address = ipaddress.IPv4Address(socket.inet_aton(bare))
        except OSError:
            return text
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return str(address)


def is_local_address(host: str) -> bool:
    """A Unix socket (a folder, an abstract @name), localhost, or this machine's loopback address 127.0.0.1 /
    ::1 (or 0.0.0.0, ::) in any spelling. Another 127.x address counts as remote here (TLS is asked of it)."""
    if host.startswith(("/", "@")):
        return True
    address = canonical_address(host)
    if address in LOCAL_NAMES:
        return True
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return ip.is_unspecified or address in {"127.0.0.1", "::1"}


def same_machine(host: str) -> bool:
    """Could be this machine: every local spelling, and any loopback address (for telling databases apart)."""
    if is_local_address(host):
        return True
    try:
        return ipaddress.ip_address(canonical_address(host)).is_loopback
    except ValueError:
        return False


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
    def address(self) -> str:
        """Where libpq connects: `hostaddr` when set (then `host` only names the server for TLS), else `host`."""
        return self.params.get("hostaddr", "") or self.params.get("host", "")

    @property
    def port(self) -> int:
        return int(self.params.get("port") or 5432)

    @property
    def password(self) -> str | None:
        return self.params.get("password")

    @property
    def is_local(self) -> bool:
        """The address libpq connects to is on this machine (a socket, loopback): judged by hostaddr first."""
        return is_local_address(self.address)

    @property
    def tls_required(self) -> bool:
        return self.params.get("sslmode", "prefer") in TLS_MODES

    def identity(self) -> tuple[str, int, str]:
        """Address, port and database, with every local spelling (socket, localhost, 127.1, ::1) and every
        numeric spelling of an address (2130706433, ::ffff:10.0.0.5) folded, hostaddr taking precedence."""
        host = "local" if same_machine(self.address) else canonical_address(self.address)
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
    _check_userinfo(normalised, source)
    try:
        params = conninfo_to_dict(normalised)
    except psycopg.ProgrammingError as exc:
        reason = mask_text(str(exc).strip().splitlines()[0] if str(exc).strip() else "unparseable")
        raise Refused(f"{source} is malformed ({reason})", f"fix {source}; the form is {EXAMPLE_URL}") from None
    clean = {k: str(v) for k, v in params.items() if v is not None and str(v) != ""}
    remember_secret(clean.get("password"))
    remember_secret(clean.get("sslpassword"))
    if not clean.get("dbname"):
        raise Refused(f"{source} names no database", f"add the database name: {EXAMPLE_URL}")
    _check_one_server(clean, source)
    if "port" in clean and not clean["port"].isdigit():
        raise Refused(f"{source} has a port that is not a number", f"fix {source}; the form is {EXAMPLE_URL}")
    if "sslpassword" in clean:
        raise Refused(
            f"{source} sets sslpassword, which the PostgreSQL tools could only be given on their command line",
            "decrypt the client key into a file only you can read (openssl pkey; chmod 600) and drop sslpassword",
        )
    return Target(tier=tier, params=clean, source=source)


def _check_userinfo(url: str, source: str) -> None:
    """A raw '@', '/' or '%' in a user name or password: refused in one line that repeats none of it."""
    head = re.split(r"[?#]", url[len("postgresql://") :], maxsplit=1)[0]
    if "@" not in head:
        return
    userinfo, _, rest = head.rpartition("@")
    if "@" in userinfo or _BAD_PERCENT.search(userinfo) or ("/" in userinfo and "/" in rest):
        raise Refused(
            f"{source} has an '@', '/' or '%' in its user name or password that is not percent-encoded",
            f"percent-encode them in {source} (@ as %40, / as %2F, % as %25)",
        )


def _check_one_server(params: dict[str, str], source: str) -> None:
    """Refuse what lets libpq choose among servers, or take the connection from a file: not pinned to one."""
    for key in ("host", "hostaddr", "port"):
        if "," in params.get(key, ""):
            raise Refused(
                f"{source} names several servers ({key} is a list): {_ONE_SERVER}",
                f"give {source} a single host and port",
            )
    if params.get("load_balance_hosts", "disable") != "disable":
        raise Refused(
            f"{source} asks for load_balance_hosts: {_ONE_SERVER}", f"remove load_balance_hosts from {source}"
        )
    if params.get("target_session_attrs", "any") != "any":
        raise Refused(
            f"{source} asks for target_session_attrs: {_ONE_SERVER}", f"remove target_session_attrs from {source}"
        )
    for key in ("service", "servicefile"):
        if key in params:
            raise Refused(
                f"{source} reads its connection from a service file ({key}=): {_ONE_SERVER}",
                f"write the host, port and database into {source} itself",
            )
