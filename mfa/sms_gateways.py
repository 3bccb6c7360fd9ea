"""SMS gateways: how a text message leaves the service.

A gateway has one method, ``send(phone, message, params)``: ``phone`` is the
normalised 11-digit mainland number, ``message`` the full text (for gateways that
send free text), ``params`` the template values (``code``, ``minutes``) for
providers that send approved templates (Aliyun, Tencent Cloud). It raises
:class:`GatewayError` when the message was not accepted.

- :class:`ConsoleGateway` (development, ``IDP_SMS_GATEWAY=console``): appends a JSON line
  ``{"phone", "code", "message", "at"}`` to ``var/sms-outbox.jsonl`` (a dev-only file
  that holds the full number and the code; tests and developers read it) and logs one
  line with the number masked (``138****5678``) and the code hidden. Production
  refuses to start with it.
- :class:`HttpGateway` (``IDP_SMS_GATEWAY=http``): POSTs a JSON body made from the
  template ``IDP_SMS_WEBHOOK_BODY`` to ``IDP_SMS_WEBHOOK_URL``, with
  ``Authorization: Bearer IDP_SMS_WEBHOOK_TOKEN`` when a token is set. Any 2xx answer
  is success. Neither the token nor the code nor the number is ever logged.

Placeholders in the template's strings: ``{phone}`` (``13800138000``),
``{phone_e164}`` (``+8613800138000``), ``{code}``, ``{minutes}``, ``{message}``.
They are replaced inside JSON strings after parsing, so a value can never break
the JSON. See docs/sms.md for Aliyun and Tencent Cloud mappings.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from abc import ABC, abstractmethod
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from core.settings import Settings
from directory.pii import mask_phone

log = logging.getLogger("idp.sms")

OUTBOX = "sms-outbox.jsonl"
DEFAULT_BODY = {"phone": "{phone}", "code": "{code}", "minutes": "{minutes}",
                "message": "{message}"}


class GatewayError(Exception):
    """The message was not accepted. The text names no number, code or secret."""


class Gateway(ABC):
    name = ""

    @abstractmethod
    def send(self, phone: str, message: str, params: Mapping[str, str]) -> None:
        """Send ``message`` to ``phone``; raise :class:`GatewayError` on failure."""


class ConsoleGateway(Gateway):
    """Development: the outbox file under the var dir, and a log line without secrets."""

    name = "console"
    _lock = threading.Lock()

    def __init__(self, var_dir: Path) -> None:
        self.path = var_dir / OUTBOX

    def send(self, phone: str, message: str, params: Mapping[str, str]) -> None:
        code = params.get("code", "")
        line = json.dumps({"phone": phone, "code": code, "message": message,
                           "at": datetime.now(UTC).isoformat(timespec="seconds")},
                          ensure_ascii=False)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._lock:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
                with os.fdopen(fd, "a", encoding="utf-8") as handle:
                    handle.write(line + "\n")
        except OSError as exc:
            raise GatewayError(f"console gateway cannot write its outbox ({exc.strerror})"
                               ) from None
        shown = message.replace(code, "*" * len(code)) if code else message
        log.info("SMS to %s (console gateway; the code is in %s): %s", mask_phone(phone),
                 self.path.name, shown)


def _fill(template: Any, values: Mapping[str, str]) -> Any:
    if isinstance(template, str):
        for name, value in values.items():
            template = template.replace("{" + name + "}", value)
        return template
    if isinstance(template, list):
        return [_fill(item, values) for item in template]
    if isinstance(template, dict):
        return {key: _fill(item, values) for key, item in template.items()}
    return template


class HttpGateway(Gateway):
    """A JSON webhook: one POST per message; 2xx is success."""

    name = "http"

    def __init__(self, url: str, *, body: Mapping[str, Any] | None = None,
                 token: str | None = None, timeout: float = 5.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.url, self.body, self.timeout = url, dict(body or DEFAULT_BODY), timeout
        self._token, self._transport = token, transport

    def request_body(self, phone: str, message: str, params: Mapping[str, str]) -> Any:
        values = {"phone": phone, "phone_e164": "+86" + phone, "message": message,
                  "code": params.get("code", ""), "minutes": params.get("minutes", "")}
        return _fill(self.body, values)

    def send(self, phone: str, message: str, params: Mapping[str, str]) -> None:
        headers = {"Accept": "application/json"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        try:
            with httpx.Client(timeout=self.timeout, transport=self._transport,
                              follow_redirects=False) as client:
                answer = client.post(self.url, json=self.request_body(phone, message, params),
                                     headers=headers)
        except httpx.HTTPError as exc:
            log.warning("SMS webhook failed: %s", type(exc).__name__)
            raise GatewayError(f"SMS webhook unreachable ({type(exc).__name__})") from None
        if not answer.is_success:
            log.warning("SMS webhook answered %s", answer.status_code)
            raise GatewayError(f"SMS webhook answered {answer.status_code}")


def make_gateway(settings: Settings) -> Gateway | None:
    """The gateway the settings ask for; None when SMS is off (``none``)."""
    if settings.sms_gateway == "http":
        body = json.loads(settings.sms_webhook_body) if settings.sms_webhook_body else None
        return HttpGateway(settings.sms_webhook_url, body=body,
                           token=settings.sms_webhook_token, timeout=settings.sms_webhook_timeout)
    if settings.sms_gateway == "console":
        return ConsoleGateway(settings.var_dir)
    return None


def app_gateway(state: Any) -> Gateway | None:
    """The gateway of an application (``app.state``), made once from its settings; tests
    may set ``state.sms_gateway`` beforehand. None when SMS is off."""
    found = getattr(state, "sms_gateway", None)
    if found is None:
        found = make_gateway(state.settings)
        state.sms_gateway = found
    return found
