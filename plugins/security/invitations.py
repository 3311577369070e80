"""Invitations: a user is created without a password and receives, by email, a one-time link
to set one: ``/plugins/security/invite#<token>``.

The token is in the link's fragment, which browsers never send: it appears in no request
line, access log, proxy log or ``Referer``; the page's script posts it in the form body. The
hub stores only its SHA-256 (the outbox keeps the email without it). Without SMTP the link is
handed to the admin who invited, once, to pass on.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import insert, select, update

from fhirhub.plugins.security.mail import send_email
from fhirhub.plugins.security.state import Security, digest, now, random_token
from fhirhub.plugins.security.tables import invitations
from fhirhub.plugins.security.users import User, check_password_strength, set_password
from fhirhub.sdk import FhirError

INVITE_PATH = "/plugins/security/invite"


@dataclass(frozen=True)
class Invitation:
    link: str
    emailed: bool  # False: no SMTP, or it failed; the inviter passes the link on


def invite(sec: Security, user: User, origin: str) -> Invitation:
    """Write the invitation email for ``user``."""
    if not user.email:
        raise FhirError(400, f"User {user.username!r} has no email address to invite")
    token = random_token()
    with sec.engine.begin() as conn:
        conn.execute(
            insert(invitations).values(
                token_hash=digest(token),
                user_id=user.id,
                expires=now() + sec.config.invitation_seconds,
                used=False,
            )
        )
    link = f"{origin}{INVITE_PATH}#{token}"
    days = sec.config.invitation_seconds // 86400
    body = (
        f"You have been invited to fhirhub as {user.username} ({user.role}"
        f"{', ' + user.tenant if user.tenant else ''}).\n\n"
        f"Set your password here (the link works once, for {days} days):\n{link}\n"
    )
    emailed = send_email(sec, user.email, "Your fhirhub account", body, secrets=(token,))
    return Invitation(link, emailed)


def invitation_user(sec: Security, token: str) -> str | None:
    """The user id a still valid invitation is for."""
    with sec.engine.connect() as conn:
        row = conn.execute(
            select(invitations).where(invitations.c.token_hash == digest(token))
        ).first()
    if row is None or row.used or row.expires < now():
        return None
    return str(row.user_id)


def accept_invitation(sec: Security, token: str, password: str) -> str:
    """Set the password and spend the link; returns the user id."""
    check_password_strength(sec, password)
    with sec.engine.connect().execution_options(**sec.write_options()) as conn, conn.begin():
        row = conn.execute(
            select(invitations).where(invitations.c.token_hash == digest(token))
        ).first()
        if row is None or row.used or row.expires < now():
            raise FhirError(400, "This invitation link is unknown, used or expired")
        conn.execute(
            update(invitations).where(invitations.c.token_hash == row.token_hash).values(used=True)
        )
    set_password(sec, row.user_id, password)
    return str(row.user_id)
