"""The UI shell: a light, server-rendered frame (layout, navigation, panel placeholders) whose
pages fetch every datum from the public FHIR API in the browser.

Plugins extend it with the ``ui_pages`` (navigation) and ``ui_patient_panels`` (patient chart)
hooks; the shell's own chart panels come from :mod:`fhirhub.ui_shell.core_panels` through the
same hook. ``mount_ui(app, hub)`` adds it to the ASGI app.
"""

from __future__ import annotations

from fhirhub.ui_shell.routes import mount_ui

__all__ = ["mount_ui"]
