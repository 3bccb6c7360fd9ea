"""Languages: zh-CN first, English second, through gettext catalogs.

The catalogs are the ``.po`` files under ``core/web/locale`` (one per language,
for the strings of every layer); they are compiled in memory at start-up, so
there is no build step. Source strings are English. The language of a request
comes, in order, from ``ui_locales`` (OpenID Connect), the ``lang`` cookie,
``Accept-Language``, and finally the configured default.
"""

from __future__ import annotations

import io
from functools import cache
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations

LOCALE_DIR = Path(__file__).parent / "locale"
SUPPORTED = ("zh-CN", "en")
DEFAULT = "zh-CN"
LANG_COOKIE = "lang"
SWITCH_PARAM = "lang"  # the language switcher's parameter: the person's own choice


def _catalog_name(locale: str) -> str:
    return locale.replace("-", "_")


@cache
def translations(locale: str) -> Translations:
    po_path = LOCALE_DIR / _catalog_name(locale) / "LC_MESSAGES" / "messages.po"
    if not po_path.exists():
        return Translations()
    with po_path.open("rb") as handle:
        catalog = read_po(handle, locale=_catalog_name(locale))
    buffer = io.BytesIO()
    write_mo(buffer, catalog)
    buffer.seek(0)
    return Translations(buffer)


def gettext(locale: str, message: str, **params: object) -> str:
    text = translations(locale).gettext(message)
    return text % params if params else text


def match(tag: str) -> str | None:
    """Map a language tag (``zh``, ``zh-Hans-CN``, ``en-US``) to a supported locale."""
    tag = tag.strip().lower().replace("_", "-")
    if not tag:
        return None
    primary = tag.split("-")[0]
    if primary == "zh":
        return "zh-CN"
    if primary == "en":
        return "en"
    return None


def from_accept_language(header: str) -> str | None:
    choices: list[tuple[float, int, str]] = []
    for index, part in enumerate(header.split(",")[:20]):
        tag, _, params = part.partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        locale = match(tag)
        if locale and quality > 0:
            choices.append((-quality, index, locale))
    return min(choices)[2] if choices else None


def negotiate(
    chosen: str | None, cookie: str | None, ui_locales: str | None,
    accept_language: str | None, default: str = DEFAULT,
) -> str:
    """The page's language: what the person chose (the switcher's ``lang`` parameter, then
    the cookie it left), then what the app asked for (OIDC ``ui_locales``, for the pages of
    its request only), then the browser's ``Accept-Language``, then ``default``."""
    if chosen and (locale := match(chosen)):
        return locale
    if cookie and (locale := match(cookie)):
        return locale
    for tag in (ui_locales or "").split()[:10]:
        if locale := match(tag):
            return locale
    if accept_language and (locale := from_accept_language(accept_language)):
        return locale
    return default if default in SUPPORTED else DEFAULT


def N_(message: str) -> str:
    """Mark a string for translation where it is defined; it is translated when shown."""
    return message
