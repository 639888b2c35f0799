"""Keep credentials out of executed notebooks, manifests and logs.

A value is secret by its key (`password`, `pwd`, `token`, ... at any depth of a
dict parameter) or by its look (a URI with a password, a token format). Text
(errors, logs) keeps its words but loses URI passwords, `key=value` secrets
and, when given, the run's known secret values.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import unquote_plus

REDACTED = "***"
_SECRET_WORDS = r"pass(?:word|wd|phrase)?|pwd|secret|token|api_?key|credential|private_?key"
_SECRET_NAME = re.compile(_SECRET_WORDS, re.I)
# The password runs to the line's last "@": a password with an unescaped "/", space or "@" is
# still hidden whole (at worst some text after it goes too; showing a piece of it is worse).
_URI_PASSWORD = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<password>[^\n]*)@", re.I)
_KEY_VALUE = re.compile(rf"""(?P<key>[\w.-]*(?:{_SECRET_WORDS})[\w.-]*["']?\s*[=:]\s*)"""
                        r"""(?P<value>"[^"]*"|'[^']*'|[^\s&;,"'}\]]+)""", re.I)
_TOKEN_VALUE = re.compile(r"\b(gh[pousr]_[A-Za-z0-9]{20,}|AKIA[0-9A-Z]{16}|xox[abprs]-[A-Za-z0-9-]{10,}"
                          r"|eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,})\b")


def _looks_secret(text: str) -> bool:
    return bool(_URI_PASSWORD.search(text) or _TOKEN_VALUE.search(text) or _KEY_VALUE.search(text))


def redact_value(value: Any) -> Any:
    """`value` with secrets replaced by *** at any depth: by key in mappings, by look in strings."""
    if isinstance(value, Mapping):
        return {k: REDACTED if _SECRET_NAME.search(str(k)) else redact_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_value(v) for v in value]
    if isinstance(value, str) and _looks_secret(value):
        return REDACTED
    return value


def is_secret(name: str, value: Any) -> bool:
    """True when a parameter is or holds a credential, by its name or anything in its value."""
    if _SECRET_NAME.search(str(name)):
        return True
    if isinstance(value, Mapping):
        return any(is_secret(k, v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return any(is_secret("", v) for v in value)
    return isinstance(value, str) and _looks_secret(value)


def redact_parameters(parameters: Mapping[str, Any]) -> dict:
    """Parameters as they may be recorded: credentials replaced by *** at any depth."""
    return redact_value(dict(parameters))


def _leaves(value: Any) -> Iterable[str]:
    if isinstance(value, Mapping):
        for v in value.values():
            yield from _leaves(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _leaves(v)
    elif value is not None and not isinstance(value, bool) and len(str(value)) >= 4:
        yield str(value)


def redact_text(text: str, known: Any = ()) -> str:
    """`text` with URI passwords, `key=value` secrets, token-looking values and the
    `known` secret values (any nesting; e.g. a run's credential parameters) replaced by ***."""
    for secret in sorted(set(_leaves(known)), key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    text = _URI_PASSWORD.sub(lambda m: f"{m['scheme']}{m['user']}:{REDACTED}@", text)
    text = _KEY_VALUE.sub(lambda m: f"{m['key']}{REDACTED}", text)
    return _TOKEN_VALUE.sub(REDACTED, text)


def safe_uri(uri: str) -> str:
    """A connection string fit to print: its scheme and hosts, the user name, never the password
    (nor the path and options, where secrets can hide).

    Written for URIs a driver refuses too: the credentials end at the last ``@``
    before the hosts, however many ``/``, ``@``, ``:`` or spaces the password holds.
    """
    scheme, sep, rest = uri.partition("://")
    if not sep:
        return "<not a URI>"
    userinfo, at, hosts = rest.rpartition("@")
    hosts = hosts.split("/", 1)[0].split("?", 1)[0]
    if not at:
        return f"{scheme}://{hosts}"
    user, colon, _ = userinfo.partition(":")
    return f"{scheme}://{user if colon and '/' not in user else REDACTED}:{REDACTED}@{hosts}"


def redact_uri(text: str, uri: str) -> str:
    """`text` (e.g. a driver's error about `uri`) with `redact_text`'s redactions and every piece of the
    URI's credentials replaced by ***, also the pieces a driver cut a badly escaped password into."""
    _, _, rest = uri.partition("://")
    userinfo, at, _ = rest.rpartition("@")
    secrets = set()
    if at:
        password = userinfo.partition(":")[2] or userinfo
        secrets = {userinfo, password, unquote_plus(password)}
        for separator in "/@: ?":
            secrets.update(piece for part in list(secrets) for piece in part.split(separator) if len(piece) >= 3)
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return redact_text(text)
