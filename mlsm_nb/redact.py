"""Keep credentials out of executed notebooks, manifests and logs."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

REDACTED = "***"
_SECRET_NAME = re.compile(r"pass(word)?|secret|token|api_?key|credential|private_?key", re.I)
_URI_PASSWORD = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<password>[^@/\s]+)@", re.I)
_TOKEN_VALUE = re.compile(r"\b(gh[pousr]_[A-Za-z0-9]{20,}|AKIA[0-9A-Z]{16}|xox[abprs]-[A-Za-z0-9-]{10,}"
                          r"|eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,})\b")


def is_secret(name: str, value: Any) -> bool:
    """True when a parameter looks like a credential, by its name or its value."""
    if _SECRET_NAME.search(name):
        return True
    return isinstance(value, str) and bool(_URI_PASSWORD.search(value) or _TOKEN_VALUE.search(value))


def redact_text(text: str) -> str:
    """`text` with URI passwords and token-looking values replaced by ***."""
    text = _URI_PASSWORD.sub(lambda m: f"{m['scheme']}{m['user']}:{REDACTED}@", text)
    return _TOKEN_VALUE.sub(REDACTED, text)


def redact_parameters(parameters: Mapping[str, Any]) -> dict:
    """Parameters as they may be recorded: credentials replaced by ***."""
    return {k: (REDACTED if is_secret(k, v) else v) for k, v in parameters.items()}
