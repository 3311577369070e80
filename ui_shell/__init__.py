"""The UI shell: a light, server-rendered frame (layout, navigation, panel placeholders) whose
pages fetch every datum from the public FHIR API in the browser.

Plugins extend it with the ``ui_pages`` (navigation) and ``ui_patient_panels`` (patient chart)
hooks; the shell's own chart panels come from :mod:`fhirhub.ui_shell.core_panels` through the
same hook. The shell itself is a plugin too (:mod:`fhirhub.ui_shell.plugin`): it uses only
the public SDK and the public FHIR API.
"""
