"""The terminology plugin's own tables: code system versions and their concepts.

Concepts are a projection kept beside the FHIR store: a CodeSystem resource of ICD-10-CM with
its 98,000 concepts inline would be a 20 MB resource read for every lookup. Each loaded code
system *version* gets a row in ``terminology_version`` and its concepts, hierarchy, words and
properties in tables keyed by that row's ``key``, so a new version never overwrites the old
one (both stay queryable by version) and a reload is one transaction that swaps ``latest``.

* ``terminology_parent``: the direct is-a edges (a concept may have several parents: LOINC
  multi-axial hierarchy, SNOMED CT);
* ``terminology_closure``: every (ancestor, descendant) pair, what ``is-a``/``descendent-of``
  filters, ``$subsumes`` and the ``:below``/``:above`` search modifiers read with one index
  lookup;
* ``terminology_word``: the folded words of each display (and designation), for the typeahead
  ``filter`` of ``$expand`` as an index range scan instead of a ``LIKE '%..%'`` table scan;
* ``terminology_property``: concept properties as (property, value) rows, for ``=`` filters.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

#: The tenant column of shared terminology (loaded by an administrator or shipped).
SHARED = ""

version_table = Table(
    "terminology_version",
    metadata,
    Column("key", Integer, primary_key=True, autoincrement=True),
    Column("url", String(255), nullable=False),
    Column("version", String(64), nullable=False),
    #: The owning tenant of a tenant's own CodeSystem; ``SHARED`` for everyone's.
    Column("tenant", String(64), nullable=False, default=SHARED),
    Column("name", String(255)),
    Column("title", Text),
    Column("content", String(16), nullable=False),  # complete | fragment | supplement ...
    Column("case_sensitive", Boolean, nullable=False, default=True),
    Column("hierarchy", String(32)),  # is-a | part-of ...
    Column("source", String(32), nullable=False),  # icd10cm | fhir | r4 | loinc | snomed
    Column("resource_id", String(64)),  # the CodeSystem resource's id, when stored as one
    #: The supplemented code system's url, for a ``content = supplement`` CodeSystem.
    Column("supplements", String(255)),
    Column("concept_count", Integer, nullable=False, default=0),
    #: ``loading`` while concepts are written (invisible to queries), then ``active``.
    Column("status", String(16), nullable=False),
    #: The version an unversioned request means: the latest loaded for (url, tenant).
    Column("latest", Boolean, nullable=False, default=False),
    Column("loaded_at", String(32)),
    UniqueConstraint("url", "version", "tenant", name="uq_terminology_version"),
)

concept_table = Table(
    "terminology_concept",
    metadata,
    Column("version_key", Integer, primary_key=True),
    Column("code", String(64), primary_key=True),
    Column("display", Text),
    Column("definition", Text),
    Column("inactive", Boolean, nullable=False, default=False),
    #: Not selectable (an ICD-10-CM chapter or block, a ``notSelectable`` concept).
    Column("abstract", Boolean, nullable=False, default=False),
    #: JSON list of designations ``[{"language", "use", "value"}]`` (``$lookup``, ``displayLanguage``).
    Column("designations", Text),
    #: Order of the concept in its source (expansions list codes in this order).
    Column("seq", Integer, nullable=False, default=0),
)
Index("ix_terminology_concept_seq", concept_table.c.version_key, concept_table.c.seq)

parent_table = Table(
    "terminology_parent",
    metadata,
    Column("version_key", Integer, primary_key=True),
    Column("code", String(64), primary_key=True),
    Column("parent", String(64), primary_key=True),
)
# Covering indexes throughout: without statistics SQLite prefers a covering index, and would
# otherwise walk the whole version through the primary key.
Index(
    "ix_terminology_parent_children",
    parent_table.c.version_key,
    parent_table.c.parent,
    parent_table.c.code,
)

closure_table = Table(
    "terminology_closure",
    metadata,
    Column("version_key", Integer, primary_key=True),
    Column("ancestor", String(64), primary_key=True),
    Column("code", String(64), primary_key=True),
)
Index(
    "ix_terminology_closure_up",
    closure_table.c.version_key,
    closure_table.c.code,
    closure_table.c.ancestor,
)

word_table = Table(
    "terminology_word",
    metadata,
    Column("version_key", Integer, primary_key=True),
    Column("word", String(64), primary_key=True),
    Column("code", String(64), primary_key=True),
)

property_table = Table(
    "terminology_property",
    metadata,
    Column("version_key", Integer, primary_key=True),
    Column("code", String(64), primary_key=True),
    Column("property", String(64), primary_key=True),
    Column("value", String(255), primary_key=True),
)
Index(
    "ix_terminology_property_value",
    property_table.c.version_key,
    property_table.c.property,
    property_table.c.value,
    property_table.c.code,
)

#: Tables holding rows per concept, deleted with their version.
CONCEPT_TABLES = (concept_table, parent_table, closure_table, word_table, property_table)
