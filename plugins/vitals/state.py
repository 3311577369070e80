"""The plugin's own tables: the ward board's latest scores, the open alert episodes and the
silenced periods, all per tenant.

FHIR holds the truth (the score Observations, RiskAssessments, Flags, Tasks); these tables are
what the dashboard and the escalation schedule query many times a minute, without a FHIR
search per patient.
"""

from __future__ import annotations

from sqlalchemy import Column, Float, Index, Integer, MetaData, String, Table

metadata = MetaData()

#: The most recent NEWS2/qSOFA of each patient (the ward board).
latest = Table(
    "vitals_latest",
    metadata,
    Column("tenant", String(64), primary_key=True),
    Column("patient_id", String(64), primary_key=True),
    Column("patient_name", String(200), nullable=False, default=""),
    Column("location", String(200), nullable=False, default=""),
    Column("news2_total", Integer),
    Column("news2_risk", String(16)),
    Column("news2_partial", Integer, nullable=False, default=0),
    Column("news2_previous", Integer),
    Column("news2_time", Float),
    Column("qsofa_total", Integer),
    Column("qsofa_risk", String(16)),
    Column("risk_assessment_id", String(64)),
    Column("effective", String(40), nullable=False, default=""),
)

#: One row per alert episode (``status`` open, acknowledged or resolved).
alert = Table(
    "vitals_alert",
    metadata,
    Column("flag_id", String(64), primary_key=True),
    Column("tenant", String(64), nullable=False, index=True),
    Column("patient_id", String(64), nullable=False, index=True),
    Column("kind", String(16), nullable=False),  # news2 | qsofa
    Column("risk", String(16), nullable=False),
    Column("total", Integer, nullable=False),
    Column("task_id", String(64), nullable=False),
    Column("status", String(16), nullable=False, index=True),
    Column("level", Integer, nullable=False, default=0),
    Column("raised_at", Float, nullable=False),
    Column("next_at", Float),
    Column("acknowledged_at", Float),
    Column("acknowledged_by", String(200)),
    Column("resolved_at", Float),
)

#: Silenced periods per patient (alert fatigue control), with the reason and who set it.
silence = Table(
    "vitals_silence",
    metadata,
    Column("tenant", String(64), primary_key=True),
    Column("patient_id", String(64), primary_key=True),
    Column("until", Float, nullable=False),
    Column("reason", String(500), nullable=False),
    Column("by", String(200), nullable=False),
)


#: The readings the consumer has seen (a projection of the vital-signs Observations, rebuilt by
#: a replay): a score's inputs are read from here in one query per batch, not searched per
#: patient. ``seq`` is the log position of the version it came from: a score uses only readings
#: at or before its trigger's, so a replay, whatever its batch sizes, rebuilds the same scores.
reading = Table(
    "vitals_reading",
    metadata,
    Column("tenant", String(64), primary_key=True),
    Column("source", String(80), primary_key=True),  # Observation/<id>
    Column("parameter", String(16), primary_key=True),
    Column("patient_id", String(64), nullable=False),
    Column("version", String(16), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("time", Float, nullable=False),
    Column("value_number", Float),
    Column("value_text", String(8)),
    Column("unit", String(16), nullable=False, default=""),
    Index("vitals_reading_patient_time", "tenant", "patient_id", "time"),
)

#: A set whose batch ended inside it (a full batch may split a transaction): scored with the
#: next batch, once the rest of its Observations has been delivered (consumer.py).
pending = Table(
    "vitals_pending",
    metadata,
    Column("tenant", String(64), primary_key=True),
    Column("patient_id", String(64), primary_key=True),
    Column("time", Float, primary_key=True),
    Column("seq", Integer, nullable=False),
    Column("encounter", String(120)),
)

#: Each user's interface language (the dashboard's language switch).
preference = Table(
    "vitals_preference",
    metadata,
    Column("subject", String(200), primary_key=True),
    Column("language", String(8), nullable=False),
)

NO_TENANT = ""
