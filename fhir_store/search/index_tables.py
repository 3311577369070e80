"""Search index tables: one typed table per search parameter type.

Each row belongs to one resource (``resource_type``, ``resource_id``) and one search parameter
code (``param``) and holds one normalised value extracted at write time. A resource has as many
rows per parameter as the parameter's expression yields values. Rows are replaced whenever the
resource changes and are a projection of the version log (rebuilt by ``fhirhub replay``).

Normalisation (see ``fhir_store.search.extract``):

* string: ``value`` is case-folded with accents removed (``search`` default and ``:contains``),
  ``exact`` is the original text (``:exact``);
* token: ``system`` and ``code`` as written (``code`` may be None for text-only values),
  ``text`` the folded display/text for ``:text``;
* date: ``low``/``high`` are the first and last microsecond (inclusive, UTC epoch) of the period
  the value covers (a date ``2020`` covers the whole year);
* number and quantity: ``value`` as given, ``low``/``high`` the implied precision range (``100``
  covers [99.5, 100.5)); quantity also ``system``, ``code`` and ``unit``;
* reference: ``target_type``/``target_id`` for relative (and resolved local absolute) references,
  ``url`` for absolute or canonical ones (with ``version`` for ``url|version`` canonicals);
* uri: ``uri`` as written;
* composite: one row per combination of component values taken from the same item (the same
  Observation or Observation.component); ``components`` is a JSON array of one object per
  component holding that component type's value columns, ``key`` the first component's token
  code (or folded string, uri, reference target id; None for date/number/quantity), see
  ``fhir_store.search.extract``.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Float, Index, String, Table, Text, text

from fhirhub.fhir_store.schema import ID_LENGTH, TYPE_LENGTH, metadata

PARAM_LENGTH = 100


def _key_columns() -> list[Column]:  # type: ignore[type-arg]
    return [
        Column("resource_type", String(TYPE_LENGTH), nullable=False),
        Column("resource_id", String(ID_LENGTH), nullable=False),
        Column("param", String(PARAM_LENGTH), nullable=False),
    ]


index_string = Table(
    "index_string",
    metadata,
    *_key_columns(),
    Column("value", Text, nullable=False),
    Column("exact", Text, nullable=False),
    Index("ix_string_lookup", "resource_type", "param", "value"),
    Index("ix_string_owner", "resource_type", "resource_id"),
)

index_token = Table(
    "index_token",
    metadata,
    *_key_columns(),
    Column("system", Text, nullable=True),
    Column("code", Text, nullable=True),
    Column("text", Text, nullable=True),
    Index("ix_token_lookup", "resource_type", "param", "code", "system"),
    Index("ix_token_owner", "resource_type", "resource_id"),
)

index_date = Table(
    "index_date",
    metadata,
    *_key_columns(),
    Column("low", BigInteger, nullable=False),
    Column("high", BigInteger, nullable=False),
    Index("ix_date_lookup", "resource_type", "param", "low", "high"),
    Index("ix_date_owner", "resource_type", "resource_id"),
)

index_number = Table(
    "index_number",
    metadata,
    *_key_columns(),
    Column("value", Float, nullable=False),
    Column("low", Float, nullable=False),
    Column("high", Float, nullable=False),
    Index("ix_number_lookup", "resource_type", "param", "value"),
    Index("ix_number_owner", "resource_type", "resource_id"),
)

index_quantity = Table(
    "index_quantity",
    metadata,
    *_key_columns(),
    Column("value", Float, nullable=False),
    Column("low", Float, nullable=False),
    Column("high", Float, nullable=False),
    Column("system", Text, nullable=True),
    Column("code", Text, nullable=True),
    Column("unit", Text, nullable=True),
    Index("ix_quantity_lookup", "resource_type", "param", "code", "value"),
    Index("ix_quantity_owner", "resource_type", "resource_id"),
)

index_reference = Table(
    "index_reference",
    metadata,
    *_key_columns(),
    Column("target_type", String(TYPE_LENGTH), nullable=True),
    Column("target_id", String(ID_LENGTH), nullable=True),
    Column("url", Text, nullable=True),
    Column("version", Text, nullable=True),
    # One value-ordered index keyed by the target serves both a reference search (target,
    # then the owner's type and parameter) and "what refers to X" (compartments,
    # $everything, referential checks): a second one ordered by type and parameter first cost
    # a random leaf page per reference row written (a Provenance has one per target), about
    # a sixth of the WAL an HL7 message writes, for no plan the first one cannot serve.
    Index("ix_reference_to", "target_id", "target_type", "resource_type", "param"),
    # Absolute and canonical references (target id None) are few: a partial index.
    Index(
        "ix_reference_url",
        "url",
        "resource_type",
        "param",
        sqlite_where=text("url IS NOT NULL"),
        postgresql_where=text("url IS NOT NULL"),
    ),
    Index("ix_reference_owner", "resource_type", "resource_id"),
)

index_uri = Table(
    "index_uri",
    metadata,
    *_key_columns(),
    Column("uri", Text, nullable=False),
    Index("ix_uri_lookup", "resource_type", "param", "uri"),
    Index("ix_uri_owner", "resource_type", "resource_id"),
)

index_composite = Table(
    "index_composite",
    metadata,
    *_key_columns(),
    # JSON array, one object per component with that component type's value columns, e.g.
    # [{"system","code","text"}, {"value","low","high","system","code","unit"}] (see
    # ``fhir_store.search.extract``); matched in Python on the candidate set pre-filtered by
    # ``key``.
    Column("key", Text, nullable=True),  # first component's code/value/uri/target id, or None
    Column("components", Text, nullable=False),
    Index("ix_composite_lookup", "resource_type", "param", "key"),
    Index("ix_composite_owner", "resource_type", "resource_id"),
)

INDEX_TABLES: dict[str, Table] = {
    "string": index_string,
    "token": index_token,
    "date": index_date,
    "number": index_number,
    "quantity": index_quantity,
    "reference": index_reference,
    "uri": index_uri,
    "composite": index_composite,
}
