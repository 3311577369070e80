"""fhirhub: a plugin-based FHIR R4 interoperability hub.

The repository's top-level folders (``core/``, ``fhir_store/``, ``plugins/``, ``adapters/``,
``ui_shell/``, ``sdk/``) are mapped into this one namespace by symbolic links in
``fhirhub/``, so that nothing generic such as ``core`` lands in site-packages and every
tool (pytest, mypy, editable installs, wheels) sees the same ``fhirhub.*`` names.
"""

__version__ = "0.1.0"
FHIR_VERSION = "4.0.1"
