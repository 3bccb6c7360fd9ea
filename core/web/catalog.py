"""Maintain the gettext catalogs: ``make messages`` extracts and merges.

Strings are extracted from every layer's Python code (``_``, ``gettext``,
``N_``) and Jinja templates into the ``.po`` file of each language; existing
translations are kept. ``tests/core/test_i18n.py`` fails while any string has
no Chinese translation or the catalogs are out of date.
"""

from __future__ import annotations

from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.pofile import read_po, write_po

from core.settings import PROJECT_ROOT
from core.web.i18n import LOCALE_DIR, SUPPORTED

PACKAGES = ("core", "directory", "mfa", "idp", "federation", "admin_ui")
METHOD_MAP = [("**.py", "python"), ("**/templates/**.html", "jinja2")]
OPTIONS = {"**/templates/**.html": {"extensions": "jinja2.ext.i18n"}}
KEYWORDS = {**DEFAULT_KEYWORDS, "N_": None}


def extract(root: Path = PROJECT_ROOT) -> Catalog:
    template = Catalog(project="edu-idp", charset="utf-8")
    for package in PACKAGES:
        folder = root / package
        if not folder.exists():
            continue
        for filename, lineno, message, comments, context in extract_from_dir(
            str(folder), METHOD_MAP, OPTIONS, KEYWORDS, comment_tags=("TRANSLATORS:",)
        ):
            template.add(message, None, [(f"{package}/{filename}", lineno)],
                         auto_comments=comments, context=context)
    return template


def po_path(locale: str) -> Path:
    return LOCALE_DIR / locale.replace("-", "_") / "LC_MESSAGES" / "messages.po"


def load(locale: str) -> Catalog:
    path = po_path(locale)
    if not path.exists():
        return Catalog(locale=locale.replace("-", "_"), project="edu-idp", charset="utf-8")
    with path.open("rb") as handle:
        return read_po(handle, locale=locale.replace("-", "_"))


def update() -> dict[str, int]:
    """Merge freshly extracted strings into every catalog; return untranslated counts."""
    template = extract()
    missing = {}
    for locale in SUPPORTED:
        catalog = load(locale)
        catalog.update(template, no_fuzzy_matching=True)
        catalog.obsolete.clear()
        path = po_path(locale)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as handle:
            write_po(handle, catalog, width=100, omit_header=False, sort_output=True,
                     include_lineno=False)
        missing[locale] = sum(1 for m in catalog if m.id and not m.string)
    return missing


if __name__ == "__main__":
    for name, count in update().items():
        print(f"{name}: {count} untranslated")
