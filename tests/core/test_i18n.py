"""Every string people see has a Chinese translation, and the catalogs are current."""

from __future__ import annotations

from core.web import i18n
from core.web.catalog import extract, load


def test_catalogs_are_up_to_date_and_chinese_is_complete() -> None:
    extracted = {m.id for m in extract() if m.id}
    chinese = load("zh-CN")
    in_catalog = {m.id for m in chinese if m.id}
    assert extracted - in_catalog == set(), "run `make messages` and translate the new strings"
    untranslated = sorted(m.id for m in chinese if m.id and not m.string)
    assert untranslated == [], "strings without a zh-CN translation"


def test_translation_is_used() -> None:
    assert i18n.gettext("zh-CN", "Page not found") == "页面不存在"
    assert i18n.gettext("en", "Page not found") == "Page not found"


def test_negotiation_order() -> None:
    """The person's choice (switcher, then its cookie), the app's ui_locales, the
    browser's Accept-Language, the default."""
    assert i18n.negotiate("en", "zh-CN", "zh", "zh") == "en"
    assert i18n.negotiate(None, "en", "zh", "zh") == "en"  # a person's choice beats an app's
    assert i18n.negotiate(None, None, "en zh", "zh") == "en"
    assert i18n.negotiate(None, None, None, "en-US,en;q=0.9") == "en"
    assert i18n.negotiate("xx", None, "yy", "zh-TW") == "zh-CN"
    assert i18n.negotiate(None, None, None, None) == "zh-CN"
    assert i18n.negotiate(None, None, None, "en;q=0, zh;q=0.1") == "zh-CN"
    assert i18n.negotiate(None, None, None, "en;q=abc") == "zh-CN"
