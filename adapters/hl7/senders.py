"""Who may feed HL7 v2 messages into the hub, and for which tenant.

MLLP has no authentication of its own, and in a hub serving several hospitals one feed must
never match, change or relabel another hospital's patients. So every sender (MSH-3 sending
application and MSH-4 sending facility) is mapped, in ``[plugin.hl7] senders``, to exactly
one tenant; optionally it is bound to peer addresses (``sender_peers``), so a sender's name
alone is not enough from elsewhere. A message is then processed as the system acting for that
tenant (:func:`fhirhub.sdk.system_for`): its conditional matches see only that tenant, its
writes carry that tenant's label, and another tenant's resources stay out of reach (403).

A sender not in the map is refused with AR, unless unknown senders are accepted (the default
only while no sender is mapped: a single-hospital hub needs no configuration). Refused
messages leave no dead letter: an unauthenticated peer must not be able to fill the database.

Over HTTP (``POST /hl7/v2``) the caller is authenticated: it must be allowed to feed (the
system, a hub or organization admin, or a backend client whose system scopes create and update
every type), and a caller bound to a tenant feeds for that tenant only.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from collections import deque
from dataclasses import dataclass, field

from fhirhub.adapters.hl7.settings import Hl7Settings, hl7_settings
from fhirhub.sdk import Access, Hub, HubLocal, system_for

#: Roles that may post HL7 v2 over HTTP (besides the system and backend clients).
FEED_ROLES = frozenset({"super_admin", "org_admin"})


@dataclass(frozen=True)
class Source:
    """Where a message came from."""

    #: The peer's address (MLLP or HTTP client), when known.
    peer: str | None = None
    #: The authenticated HTTP caller; None for MLLP, whose peers are not authenticated.
    caller: Access | None = None
    #: The hub's operator (command line, dead-letter replay): unknown senders are accepted.
    operator: bool = False


#: Messages handed to the processing code without a source (tests, in-process callers) come
#: from the operator.
OPERATOR = Source(operator=True)


@dataclass(frozen=True)
class Feed:
    """A sender allowed in: the tenant its messages are written for (None: every tenant, a
    hub without tenants)."""

    sender: str
    tenant: str | None

    @property
    def access(self) -> Access:
        return system_for(self.tenant)


@dataclass(frozen=True)
class Refusal:
    """A sender kept out; ``text`` goes into the AR's ERR segment."""

    sender: str
    text: str
    #: MSH field the refusal points at (3: sending application, 4: facility).
    field: int = 4


class SenderDirectory:
    """The sender map of one hub, resolved once (settings are read at startup)."""

    def __init__(self, settings: Hl7Settings, default_tenant: str | None) -> None:
        self.senders = {key.strip(): tenant or None for key, tenant in settings.senders.items()}
        self.peers = {
            key.strip(): [ipaddress.ip_network(n, strict=False) for n in networks]
            for key, networks in settings.sender_peers.items()
        }
        accept = settings.accept_unknown_senders
        self.accept_unknown = (not self.senders) if accept is None else accept
        self.default_tenant = default_tenant or None
        self.quota = DeadLetterQuota(settings.dead_letters_per_hour)

    def _mapped(self, sender: str) -> str | None:
        """The configured key ``sender`` matches: exact, then any application at the facility,
        then the application at any facility."""
        app, _, facility = sender.partition("@")
        for key in (sender, f"*@{facility}", f"{app}@*"):
            if key in self.senders:
                return key
        return None

    def resolve(self, sender: str, source: Source) -> Feed | Refusal:
        """Whether ``sender`` (``APP@FACILITY``) may feed from ``source``, and for whom."""
        key = self._mapped(sender)
        if key is not None and key in self.peers and not source.operator:
            if not _peer_in(source.peer, self.peers[key]):
                return Refusal(sender, f"Sender {sender} is not accepted from {source.peer}")
        caller = source.caller
        if caller is not None and not caller.is_system:
            if not may_feed(caller):
                return Refusal(sender, "The caller may not send HL7 v2 messages", field=3)
            if caller.tenant is not None:
                mapped = self.senders.get(key) if key is not None else caller.tenant
                if mapped != caller.tenant:
                    return Refusal(sender, f"Sender {sender} belongs to another organization")
                return Feed(sender, caller.tenant)
        if key is not None:
            return Feed(sender, self.senders[key])
        if self.accept_unknown or source.operator:
            return Feed(sender, self.default_tenant)
        return Refusal(sender, f"Sender {sender} is not configured on this hub")


def may_feed(caller: Access) -> bool:
    """The system (also acting for one tenant), a hub or organization admin, or a backend
    client whose system-level scopes create and update every resource type; never a
    patient-facing app."""
    if caller.patient is not None:
        return False
    if caller.is_system or (caller.subject == "system" and caller.scopes is None):
        return True  # the system, also acting for one tenant (an interface engine's feed)
    if caller.roles & FEED_ROLES:
        return True
    return any(
        s.context == "system" and s.resource_type == "*" and {"c", "u"} <= s.permissions
        for s in caller.scopes or ()
    )


def _peer_in(
    peer: str | None, networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network]
) -> bool:
    if not peer:
        return False
    try:
        address = ipaddress.ip_address(peer)
    except ValueError:
        return False
    return any(address in network for network in networks)


@dataclass
class DeadLetterQuota:
    """Dead letters stored per feed in the last hour: failures beyond ``per_hour`` are still
    answered (AE/AR) and logged, but not stored, so a broken or hostile peer cannot grow the
    database without bound."""

    per_hour: int
    _stored: dict[str, deque[float]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, feed: str, now: float | None = None) -> bool:
        """Count one dead letter for ``feed``; False when its hour's quota is spent."""
        now = time.monotonic() if now is None else now
        with self._lock:
            times = self._stored.setdefault(feed, deque())
            while times and times[0] <= now - 3600:
                times.popleft()
            if len(times) >= self.per_hour:
                return False
            times.append(now)
            return True


_DIRECTORY: HubLocal[SenderDirectory] = HubLocal("hl7.senders")


def sender_directory(hub: Hub) -> SenderDirectory:
    """The hub's sender map (built on first use)."""
    directory = _DIRECTORY.get(hub)
    if directory is None:
        directory = SenderDirectory(hl7_settings(hub), hub.settings.default_tenant)
        _DIRECTORY.set(hub, directory)
    return directory


def sender_of(app_field: str, facility_field: str, component: str = "^") -> str:
    """``APP@FACILITY`` from raw MSH-3 and MSH-4 (first component, or the second, the
    universal id, when the first is empty), as :attr:`Message.sender` gives it."""

    def first(value: str) -> str:
        parts = value.split(component)
        return parts[0] or (parts[1] if len(parts) > 1 else "")

    return f"{first(app_field)}@{first(facility_field)}"
