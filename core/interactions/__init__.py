"""FHIR REST semantics without HTTP: one module per kind of interaction.

Used by the HTTP layer, the adapters (HL7 v2, DICOM, OSCAR) and plugins alike, so every
source of data goes through the same write path (validation, hooks, versions, indexes).
"""
