"""Email delivery of notifications, for the users who ask for it (docs/messaging.md).

Each user chooses (the Messages page, ``/plugins/messaging/api/preferences``) whether their
notifications and reminders, and optionally their messages, are also emailed. Delivery never
runs in a request:

* a consumer of the version log (``messaging-email``) turns each new, unread
  ``Communication`` into one outbox row per opted-in recipient, keyed by (tenant,
  Communication, Practitioner): a consumer re-delivering a batch, or a replay, adds nothing;
* a schedule (``messaging-email``) sends the rows that are due through the hub's SMTP server.
  A row is claimed (``pending`` → ``sending``) before it is sent and marked ``sent`` after,
  so no two senders send it and it is sent at most once: a process that dies in between
  leaves it ``sending`` (lost rather than doubled). A failed attempt is logged, its error
  kept on the row, and retried after ``email_retry_s``, doubling, until
  ``email_max_attempts`` (then ``failed``).

The email carries what the notification carries (its text, category and time) and a link to
the Messages page; not the Patient it concerns nor anything else of the record.
"""

from __future__ import annotations

import logging
import re
import smtplib
import time
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import (
    Boolean,
    Column,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    and_,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from fhirhub.plugins.messaging.messages import category_of, is_unread
from fhirhub.plugins.messaging.settings import MessagingSettings
from fhirhub.sdk import (
    FhirError,
    Hub,
    HubLocal,
    PluginDatabase,
    StoredVersion,
    acting_as,
    format_instant,
    read,
    search,
    smtp_send,
    system_for,
)

log = logging.getLogger("fhirhub.messaging.email")

metadata = MetaData()

#: A user's choice, keyed by their Practitioner in their tenant ("" for an untenanted hub).
preference = Table(
    "messaging_email_preference",
    metadata,
    Column("tenant", String(64), primary_key=True),
    Column("practitioner", String(128), primary_key=True),
    Column("notifications", Boolean, nullable=False, default=False),
    Column("messages", Boolean, nullable=False, default=False),
    Column("address", String(320)),
    Column("updated", Float, nullable=False),
)

#: What is (to be) emailed: one row per notification and recipient, never two.
outbox = Table(
    "messaging_email_outbox",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("tenant", String(64), nullable=False),
    Column("communication", String(64), nullable=False),
    Column("practitioner", String(128), nullable=False),
    Column("address", String(320), nullable=False),
    Column("subject", Text, nullable=False),
    Column("body", Text, nullable=False),
    Column("status", String(16), nullable=False),  # pending, sending, sent, failed
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt", Float, nullable=False),
    Column("last_error", Text),
    Column("created", Float, nullable=False),
    Column("sent", Float),
    UniqueConstraint("tenant", "communication", "practitioner", name="messaging_email_once"),
)

#: Notification categories a user's ``notifications`` choice covers; ``message`` has its own.
NOTICE_CATEGORIES = frozenset({"notification", "reminder"})
#: Enough to refuse what cannot be an address (RFC 5321 limits an address to 254 characters).
ADDRESS = re.compile(r"^[^@\s<>,;\"]+@[^@\s<>,;\"]+\.[^@\s<>,;\"]+$")
MAX_ADDRESS = 254
SUBJECTS = {
    "notification": "Notification",
    "reminder": "Reminder",
    "message": "New message",
}
PAGE_LINK = "/ui/page?path=/plugins/messaging/page/#thread="
BATCH = 50

_database: HubLocal[PluginDatabase] = HubLocal("messaging.email")


def database(hub: Hub) -> PluginDatabase:
    return _database.setdefault(hub, lambda: PluginDatabase(hub, metadata))


@dataclass(frozen=True)
class Preferences:
    notifications: bool = False
    messages: bool = False
    address: str | None = None

    def wants(self, category: str) -> bool:
        return self.notifications if category in NOTICE_CATEGORIES else self.messages


def _tenant_key(tenant: str | None) -> str:
    return tenant or ""


def preferences_of(hub: Hub, tenant: str | None, practitioner: str) -> Preferences:
    with database(hub).read() as conn:
        row = conn.execute(
            select(preference).where(
                preference.c.tenant == _tenant_key(tenant),
                preference.c.practitioner == practitioner,
            )
        ).first()
    if row is None:
        return Preferences()
    return Preferences(bool(row.notifications), bool(row.messages), row.address)


def parse_preferences(body: Any, current: Preferences) -> Preferences:
    """The preferences a PUT body asks for (keys left out keep their value); 400 otherwise."""
    if not isinstance(body, dict):
        raise FhirError(400, "Send a JSON object: {notifications, messages, address}")
    unknown = set(body) - {"notifications", "messages", "address"}
    if unknown:
        raise FhirError(
            400,
            f"Unknown preference(s) {', '.join(sorted(unknown))}: only notifications, "
            "messages and address can be set, and only for yourself",
        )
    flags = {"notifications": current.notifications, "messages": current.messages}
    for key in flags:
        if key in body:
            if not isinstance(body[key], bool):
                raise FhirError(400, f"{key} must be true or false")
            flags[key] = body[key]
    address = current.address
    if "address" in body:
        wanted = body["address"]
        if wanted in (None, ""):
            address = None
        elif (
            not isinstance(wanted, str)
            or len(wanted) > MAX_ADDRESS
            or not ADDRESS.match(wanted.strip())
        ):
            raise FhirError(400, f"address {wanted!r} is not an email address")
        else:
            address = wanted.strip()
    return Preferences(flags["notifications"], flags["messages"], address)


def save_preferences(hub: Hub, tenant: str | None, practitioner: str, prefs: Preferences) -> None:
    key = {"tenant": _tenant_key(tenant), "practitioner": practitioner}
    values = {
        "notifications": prefs.notifications,
        "messages": prefs.messages,
        "address": prefs.address,
        "updated": time.time(),
    }
    where = and_(*(getattr(preference.c, k) == v for k, v in key.items()))
    with database(hub).begin() as conn:
        if conn.execute(update(preference).where(where).values(**values)).rowcount == 0:
            conn.execute(insert(preference).values(**key, **values))


def delivery_status(hub: Hub, tenant: str | None, practitioner: str) -> dict[str, Any]:
    """A user's emails by status, the last one sent and the last error (for the settings)."""
    mine = and_(outbox.c.tenant == _tenant_key(tenant), outbox.c.practitioner == practitioner)
    with database(hub).read() as conn:
        counts: dict[str, int] = dict(
            conn.execute(
                select(outbox.c.status, func.count()).where(mine).group_by(outbox.c.status)
            ).all()
        )
        last_sent = conn.execute(select(func.max(outbox.c.sent)).where(mine)).scalar()
        failing = conn.execute(
            select(outbox.c.last_error, outbox.c.attempts, outbox.c.status)
            .where(
                mine, outbox.c.status.in_(("pending", "failed")), outbox.c.last_error.is_not(None)
            )
            .order_by(outbox.c.id.desc())
            .limit(1)
        ).first()
    return {
        "pending": int(counts.get("pending", 0)) + int(counts.get("sending", 0)),
        "sent": int(counts.get("sent", 0)),
        "failed": int(counts.get("failed", 0)),
        "last_sent": format_instant(int(last_sent * 1_000_000)) if last_sent else None,
        "last_error": (
            None
            if failing is None
            else {
                "error": failing.last_error,
                "attempts": failing.attempts,
                "status": failing.status,
            }
        ),
    }


def email_address(hub: Hub, practitioner: str, prefs: Preferences) -> str | None:
    """The preference's address, else the Practitioner's ``telecom`` email, else that of a
    Person linked to it (read as the caller: the consumer acts for the message's tenant)."""
    if prefs.address:
        return prefs.address
    try:
        resources = [read(hub, "Practitioner", practitioner.removeprefix("Practitioner/"))]
    except FhirError:
        return None
    resources += search(hub, "Person", {"link": practitioner, "_count": "5"})
    for resource in resources:
        emails = [t for t in resource.get("telecom", ()) if t.get("system") == "email"]
        emails.sort(key=lambda t: (t.get("use") != "work", t.get("rank", 1_000)))
        for telecom in emails:
            if t := str(telecom.get("value", "")).strip():
                return t
    return None


def _practitioners(hub: Hub, references: list[str]) -> list[str]:
    """The Practitioners a message reaches: addressed directly, through a PractitionerRole,
    or as members of a CareTeam (one level)."""
    found: list[str] = []

    def add(reference: str) -> None:
        kind, _, rid = reference.partition("/")
        try:
            if kind == "Practitioner":
                found.append(reference)
            elif kind == "PractitionerRole":
                role = read(hub, kind, rid)
                target = (role.get("practitioner") or {}).get("reference")
                if isinstance(target, str) and target.startswith("Practitioner/"):
                    found.append(target)
            elif kind == "CareTeam":
                team = read(hub, kind, rid)
                for participant in team.get("participant", ()):
                    member = (participant.get("member") or {}).get("reference", "")
                    if member.split("/")[0] in ("Practitioner", "PractitionerRole"):
                        add(member)
        except FhirError:
            pass  # not visible in the message's tenant, or gone: nobody to email

    for reference in references:
        add(reference)
    return list(dict.fromkeys(found))


def _display(hub: Hub, reference: str | None) -> str:
    if not reference:
        return "fhirhub"
    kind, _, rid = reference.partition("/")
    try:
        resource = read(hub, kind, rid)
    except FhirError:
        return reference
    for name in resource.get("name", ()):
        if name.get("text"):
            return str(name["text"])
        parts = [*name.get("given", ()), name.get("family", "")]
        if any(parts):
            return " ".join(p for p in parts if p)
    return reference


def compose(hub: Hub, message: dict[str, Any], category: str) -> tuple[str, str]:
    """Subject and body: the notification's own text, its kind, time and sender, and a link.

    Nothing else of the record: not the Patient it is ``about`` (a name in an inbox outside
    the hub is a disclosure), not the Appointment."""
    text = (
        "\n".join(
            str(p["contentString"]) for p in message.get("payload", ()) if p.get("contentString")
        )
        or "(an attachment: open the Messages page to see it)"
    )
    label = SUBJECTS.get(category, "Notification")
    sender = (message.get("sender") or {}).get("reference")
    subject = f"[fhirhub] {label}"
    if category == "message":
        subject += f" from {_display(hub, sender)}"
    body = (
        f"{label} from {_display(hub, sender)}, sent {message.get('sent', '')}:\n\n"
        f"{text}\n\n"
        f"Open it: {hub.base_url}{PAGE_LINK}{message['id']}\n\n"
        "You receive this because you asked for notifications by email; change it in the "
        "settings of the Messages page.\n"
    )
    return subject, body


def enqueue(hub: Hub, settings: MessagingSettings, versions: list[StoredVersion]) -> int:
    """The consumer's work: one outbox row per new unread message and opted-in recipient.
    Runs as the system for the message's tenant, so only that tenant's people are reached."""
    if not settings.smtp_url:
        return 0
    added = 0
    for version in versions:
        if version.deleted or version.content is None:
            continue
        message = orjson.loads(version.content)
        if not is_unread(message):
            continue
        category = category_of(message)
        sender = (message.get("sender") or {}).get("reference")
        with acting_as(system_for(version.tenant)):
            references = [str(r.get("reference", "")) for r in message.get("recipient", ())]
            for practitioner in _practitioners(hub, references):
                if practitioner == sender:
                    continue
                prefs = preferences_of(hub, version.tenant, practitioner)
                if not prefs.wants(category):
                    continue
                added += _add(hub, version, message, category, practitioner, prefs)
    return added


def _add(
    hub: Hub,
    version: StoredVersion,
    message: dict[str, Any],
    category: str,
    practitioner: str,
    prefs: Preferences,
) -> int:
    key = {
        "tenant": _tenant_key(version.tenant),
        "communication": version.resource_id,
        "practitioner": practitioner,
    }
    where = and_(*(getattr(outbox.c, k) == v for k, v in key.items()))
    with database(hub).read() as conn:
        if conn.execute(select(outbox.c.id).where(where)).first() is not None:
            return 0  # already queued or sent: at most once
    address = email_address(hub, practitioner, prefs)
    subject, body = compose(hub, message, category)
    now = time.time()
    row = {
        **key,
        "address": address or "",
        "subject": subject,
        "body": body,
        "status": "pending" if address else "failed",
        "attempts": 0,
        "next_attempt": now,
        "created": now,
        "last_error": None
        if address
        else "No email address: add a telecom email to your Practitioner or set one",
    }
    if address is None:
        log.error(
            "Communication/%s is not emailed to %s: no email address",
            version.resource_id,
            practitioner,
        )
    try:
        with database(hub).begin() as conn:
            conn.execute(insert(outbox).values(**row))
    except IntegrityError:
        return 0  # another process queued it first
    return 1


def deliver_due(hub: Hub, settings: MessagingSettings, now: float | None = None) -> int:
    """The schedule's work: send the rows that are due; the number sent."""
    if not settings.smtp_url:
        return 0
    now = time.time() if now is None else now
    db = database(hub)
    with db.read() as conn:
        due = conn.execute(
            select(outbox)
            .where(outbox.c.status == "pending", outbox.c.next_attempt <= now)
            .order_by(outbox.c.id)
            .limit(BATCH)
        ).all()
    sent = 0
    for row in due:
        with db.begin() as conn:
            claimed = conn.execute(
                update(outbox)
                .where(outbox.c.id == row.id, outbox.c.status == "pending")
                .values(status="sending", attempts=outbox.c.attempts + 1)
            ).rowcount
        if claimed != 1:
            continue  # another sender took it
        attempts = row.attempts + 1
        try:
            smtp_send(settings.smtp_url, settings.mail_from, row.address, row.subject, row.body)
        except (OSError, smtplib.SMTPException) as exc:
            error = f"SMTP failed: {exc}"
            final = attempts >= settings.email_max_attempts
            wait = min(settings.email_retry_s * 2 ** (attempts - 1), settings.email_retry_max_s)
            log.error(
                "Email of Communication/%s to %s not sent (attempt %d of %d): %s; %s",
                row.communication,
                row.address,
                attempts,
                settings.email_max_attempts,
                error,
                "given up" if final else f"retrying in {wait:.0f} s",
            )
            with db.begin() as conn:
                conn.execute(
                    update(outbox)
                    .where(outbox.c.id == row.id)
                    .values(
                        status="failed" if final else "pending",
                        next_attempt=time.time() + wait,
                        last_error=error,
                    )
                )
            continue
        with db.begin() as conn:
            conn.execute(
                update(outbox)
                .where(outbox.c.id == row.id)
                .values(status="sent", sent=time.time(), last_error=None)
            )
        log.info("Emailed Communication/%s to %s", row.communication, row.address)
        sent += 1
    return sent
