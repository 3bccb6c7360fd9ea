"""JSON logs, one object a line, that never carry secrets or personal data.

Every record gets the request id of the request it belongs to. A redaction
filter masks, in the message and in every extra field: passwords, tokens and
secrets given as ``name=value`` or JSON members, bearer/basic credentials,
JWTs, 18-character mainland ID numbers, mainland mobile numbers and e-mail addresses. Code
should not log such data in the first place; this is the safety net.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")

_FIELDS = (
    r"password|passwd|pwd|secret|token|access_token|refresh_token|id_token|code_verifier|"
    r"client_secret|authorization|cookie|otp|totp|code|assertion|credential|private_key|"
    r"master_key|national_id|id_number|phone|mobile"
)
_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    # name=value and "name": "value" pairs whose name says secret
    (re.compile(rf'(?i)("?(?:{_FIELDS})"?\s*[:=]\s*)("[^"]*"|[^\s&,;"]+)'), r"\1[redacted]"),
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+"), r"\1 [redacted]"),
    (re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"), "[jwt]"),
    (re.compile(r"(?<!\d)\d{6}(?:18|19|20)\d{2}(?:0[1-9]|1[0-2])\d{2}\d{3}[\dXx](?![\dA-Za-z])"),
     "[id-number]"),
    (re.compile(r"(?<!\d)(?:\+?86[- ]?)?1[3-9]\d{9}(?!\d)"), "[phone]"),
    (re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"), "[email]"),  # a path may name a person
]


def redact(text: str) -> str:
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message", "asctime", "color_message"}  # uvicorn's ANSI-coloured copy of msg


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": redact(record.getMessage()),
        }
        if rid := request_id_var.get():
            entry["request_id"] = rid  # ours, or a caller's that redact() leaves alone
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = redact(value) if isinstance(value, str) else value
        if record.exc_info:
            entry["error"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    # Our middleware writes the access log (without query strings, which carry codes).
    logging.getLogger("uvicorn.access").disabled = True
    # httpx logs every request's full URL at INFO (an SMS relay's URL may hold its key)
    logging.getLogger("httpx").setLevel(logging.WARNING)
