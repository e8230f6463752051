"""Hide passwords wherever text can carry them: URLs, query strings, libpq key=value strings.

Every piece of text that leaves the process (console, audit log, exception text, manifests)
goes through `mask_text`. Passwords parsed from configured URLs are also remembered and
replaced literally, which catches them in places no pattern can predict.
"""

from __future__ import annotations

import re
from urllib.parse import quote, unquote

MASK = "***"
_MIN_LITERAL = 4  # shorter secrets would garble ordinary text; the patterns still catch them

_known_secrets: set[str] = set()

# scheme://user:password@host  (password may be empty or hold anything but space, a raw '@', ':' or '/'
# included: everything up to the last '@' of the word is masked, so no part of it is ever shown)
_URL_USERINFO = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.-]*://[^:/?#@\s]*:)(?P<secret>\S*)(?=@)")
# ?password=... or &password=... in a URL query string
_QUERY_PASSWORD = re.compile(r"(?i)(?P<head>[?&;](?:password|sslpassword)=)(?P<secret>[^&#\s]*)")
# libpq key=value strings and shell-style assignments: password=secret, password = 'a b', PGPASSWORD=x
_KEYVALUE_PASSWORD = re.compile(
    r"(?i)(?P<head>\b(?:password|sslpassword|pgpassword|passwd)\s*=\s*)"
    r"(?P<secret>'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|[^\s&'\"]+)"
)


def remember_secret(secret: str | None) -> None:
    """Register a password so that it is masked even where no pattern recognises it."""
    if secret and len(secret) >= _MIN_LITERAL:
        _known_secrets.add(secret)
        _known_secrets.add(quote(secret, safe=""))
        _known_secrets.add(unquote(secret))


def mask_text(text: str) -> str:
    """Return `text` with every password replaced by ***."""
    if not text:
        return text
    out = _URL_USERINFO.sub(lambda m: m.group("head") + (MASK if m.group("secret") else ""), text)
    out = _QUERY_PASSWORD.sub(lambda m: m.group("head") + MASK, out)
    out = _KEYVALUE_PASSWORD.sub(lambda m: m.group("head") + MASK, out)
    for secret in sorted(_known_secrets, key=len, reverse=True):
        if secret in out:
            out = out.replace(secret, MASK)
    return out


def mask_value(value: object) -> object:
    """Mask strings inside an argument value (for audit lines); other values pass through."""
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, list | tuple):
        return [mask_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): mask_value(v) for k, v in value.items()}
    return value
