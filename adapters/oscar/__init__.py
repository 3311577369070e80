"""The OSCAR EMR adapter: a clinic's OSCAR records in fhirhub, kept in step (docs/oscar.md)."""
