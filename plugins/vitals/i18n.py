"""The one translation layer of the vitals UI: gettext catalogs (``locale/<lang>/LC_MESSAGES/
vitals.po``) read with Babel, served to the page as JSON, and each user's chosen language.

English is the source language (the message ids); add a language by adding its ``.po``
(``pybabel init``/``update`` work on it as on any gettext catalog) and naming it in
:data:`LANGUAGES`. Clinical content written to the record (alert texts, notes) stays in the
record's language; only the interface is translated.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from babel.messages.pofile import read_po

LOCALE_DIR = Path(__file__).resolve().parent / "locale"
LANGUAGES = {"en": "English", "es": "Español"}


@cache
def messages(language: str) -> dict[str, str]:
    """msgid -> translation for ``language`` (empty for English or an unknown language)."""
    path = LOCALE_DIR / language / "LC_MESSAGES" / "vitals.po"
    if language not in LANGUAGES or not path.is_file():
        return {}
    with path.open("rb") as handle:
        catalog = read_po(handle, locale=language)
    return {
        str(message.id): str(message.string)
        for message in catalog
        if message.id and message.string and not message.fuzzy
    }
