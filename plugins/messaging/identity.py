"""Who a signed-in user is in FHIR terms: the Practitioner carrying the identifier
``urn:fhirhub:user|<username>`` in the user's tenant. Messages are addressed to FHIR
references (Practitioner, PractitionerRole, CareTeam); a user's mailbox is what is addressed
to their Practitioner, to their PractitionerRoles and to the CareTeams they take part in."""

from __future__ import annotations

from fhirhub.sdk import Access, Hub, current_access, forbidden, search

USER_SYSTEM = "urn:fhirhub:user"


def username_of(access: Access) -> str | None:
    return access.subject.removeprefix("user:") if access.subject.startswith("user:") else None


def practitioner_of(hub: Hub, username: str) -> str | None:
    """``Practitioner/<id>`` of a user (searched with the current caller's access)."""
    found = search(hub, "Practitioner", {"identifier": f"{USER_SYSTEM}|{username}", "_count": "2"})
    return f"Practitioner/{found[0]['id']}" if found else None


def mailboxes(hub: Hub, practitioner: str) -> list[str]:
    """Every reference whose messages this practitioner reads: itself, its roles, its teams."""
    refs = [practitioner]
    refs += [
        f"PractitionerRole/{r['id']}"
        for r in search(hub, "PractitionerRole", {"practitioner": practitioner, "_count": "100"})
    ]
    refs += [
        f"CareTeam/{t['id']}"
        for t in search(hub, "CareTeam", {"participant": practitioner, "_count": "100"})
    ]
    return refs


def me(hub: Hub) -> str:
    """The caller's Practitioner reference; 403 for a caller that is no linked user."""
    username = username_of(current_access())
    practitioner = practitioner_of(hub, username) if username else None
    if practitioner is None:
        raise forbidden(
            "Messaging needs a Practitioner with the identifier "
            f"{USER_SYSTEM}|<your username> in your organisation"
        )
    return practitioner
