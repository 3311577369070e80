"""A Subscription resource read into what the hub acts on: which versions it wants, how to
deliver them, and with which payload.

Two forms are accepted (http://hl7.org/fhir/R4/subscription.html and the Subscriptions R5
Backport IG for R4, http://hl7.org/fhir/uv/subscriptions-backport/):

* classic R4: ``criteria`` is a search URL (``Observation?code=http://loinc.org|2339-0``);
* topic-based: ``criteria`` is the canonical URL of a SubscriptionTopic (an R4 ``Basic``
  carrying the cross-version SubscriptionTopic extensions, see :mod:`.topics`), with optional
  ``backport-filter-criteria`` search URLs on ``_criteria``.

Every criteria string is checked with the REST search code when the Subscription is written,
so a criteria the search cannot answer is refused with 400 instead of never matching.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from fhirhub.sdk import RESOURCE_TYPES, invalid

BACKPORT = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
BACKPORT_PROFILE = BACKPORT + "backport-subscription"
FILTER_CRITERIA = BACKPORT + "backport-filter-criteria"
HEARTBEAT_PERIOD = BACKPORT + "backport-heartbeat-period"
TIMEOUT = BACKPORT + "backport-timeout"
MAX_COUNT = BACKPORT + "backport-max-count"
PAYLOAD_CONTENT = BACKPORT + "backport-payload-content"

CHANNELS = ("rest-hook", "websocket")
PAYLOADS = ("empty", "id-only", "full-resource")


@dataclass(frozen=True)
class Trigger:
    """One resource type a subscription watches, with the search criteria a version must
    match (``""``: any) and the interactions that count (create, update, delete)."""

    resource_type: str
    criteria: str = ""
    interactions: tuple[str, ...] = ("create", "update")


@dataclass(frozen=True)
class SubscriptionSpec:
    id: str
    status: str
    topic: str | None  # the topic's canonical URL; None for a classic R4 subscription
    triggers: tuple[Trigger, ...]
    channel: str
    endpoint: str | None
    headers: tuple[tuple[str, str], ...] = ()
    payload: str = "empty"
    heartbeat_s: int = 0
    timeout_s: int = 0
    max_count: int = 0  # 0: the hub's setting
    end: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SubscriptionSpec:
        triggers = tuple(
            Trigger(t["resource_type"], t["criteria"], tuple(t["interactions"]))
            for t in data["triggers"]
        )
        headers = tuple((h[0], h[1]) for h in data.get("headers", ()))
        return cls(**{**data, "triggers": triggers, "headers": headers})


def extension_value(element: dict[str, Any] | None, url: str) -> Any:
    for extension in (element or {}).get("extension", ()):
        if extension.get("url") == url:
            for key, value in extension.items():
                if key.startswith("value"):
                    return value
    return None


def extension_values(element: dict[str, Any] | None, url: str) -> list[Any]:
    return [
        value
        for extension in (element or {}).get("extension", ())
        if extension.get("url") == url
        for key, value in extension.items()
        if key.startswith("value")
    ]


def split_criteria(text: str, what: str = "criteria") -> tuple[str, str]:
    """``Observation?code=x`` -> (``Observation``, ``code=x``); 400 when not a search URL."""
    resource_type, _, query = text.strip().partition("?")
    if resource_type not in RESOURCE_TYPES:
        raise invalid(
            f"Subscription {what} must be a search URL starting with a resource type "
            f"('Observation?code=...'), not {text!r}"
        )
    return resource_type, query


def parse_subscription(
    resource: dict[str, Any], topics: dict[str, tuple[Trigger, ...]]
) -> SubscriptionSpec:
    """The spec of a Subscription; raises 400 for what the hub cannot honour. ``topics``
    maps the known topics' canonical URLs to their triggers."""
    criteria = str(resource.get("criteria") or "").strip()
    if not criteria:
        raise invalid("Subscription.criteria is required")
    channel = resource.get("channel") or {}
    channel_type = channel.get("type")
    if channel_type not in CHANNELS:
        raise invalid(
            f"Subscription.channel.type {channel_type!r} is not supported; "
            f"use one of {', '.join(CHANNELS)}"
        )
    endpoint = channel.get("endpoint")
    if channel_type == "rest-hook":
        if not endpoint or not str(endpoint).startswith(("http://", "https://")):
            raise invalid("A rest-hook Subscription needs an http(s) channel.endpoint")
    headers: list[tuple[str, str]] = []
    for header in channel.get("header", ()):
        name, sep, value = str(header).partition(":")
        if not sep or not name.strip() or "\n" in header or "\r" in header:
            raise invalid(f"Subscription.channel.header {header!r} is not 'Name: value'")
        headers.append((name.strip(), value.strip()))

    topic: str | None = None
    profiles = (resource.get("meta") or {}).get("profile", ())
    filters = [str(f) for f in extension_values(resource.get("_criteria"), FILTER_CRITERIA)]
    is_topic = BACKPORT_PROFILE in profiles or "?" not in criteria and "://" in criteria
    if is_topic:
        topic = criteria
        if topic not in topics:
            raise invalid(f"Unknown SubscriptionTopic {topic!r}")
        triggers = _filtered(topics[topic], filters)
    else:
        if filters:
            raise invalid("backport-filter-criteria belongs to topic-based subscriptions")
        resource_type, query = split_criteria(criteria)
        triggers = (Trigger(resource_type, query),)

    payload_mime = channel.get("payload")
    payload_content = extension_value(channel.get("_payload"), PAYLOAD_CONTENT)
    if payload_content is None:
        payload_content = "full-resource" if payload_mime else "empty"
    if payload_content not in PAYLOADS:
        raise invalid(f"Payload content {payload_content!r} is not one of {', '.join(PAYLOADS)}")
    if payload_mime and payload_mime.split(";")[0] not in (
        "application/fhir+json",
        "application/json",
    ):
        raise invalid(f"Payload type {payload_mime!r} is not supported: use application/fhir+json")
    return SubscriptionSpec(
        id=str(resource.get("id") or ""),
        status=str(resource.get("status") or "requested"),
        topic=topic,
        triggers=triggers,
        channel=str(channel_type),
        endpoint=str(endpoint) if endpoint else None,
        headers=tuple(headers),
        payload=str(payload_content),
        heartbeat_s=_non_negative(extension_value(channel, HEARTBEAT_PERIOD), "heartbeat-period"),
        timeout_s=_non_negative(extension_value(channel, TIMEOUT), "timeout"),
        max_count=_non_negative(extension_value(channel, MAX_COUNT), "max-count"),
        end=resource.get("end"),
    )


def _filtered(triggers: tuple[Trigger, ...], filters: list[str]) -> tuple[Trigger, ...]:
    """A topic's triggers narrowed by the subscription's filter criteria (search URLs on the
    triggers' types; each filter must name a type the topic triggers on)."""
    by_type: dict[str, list[str]] = {}
    for text in filters:
        resource_type, query = split_criteria(text, "filter criteria")
        if resource_type not in {t.resource_type for t in triggers}:
            raise invalid(f"Filter {text!r} names a type the topic does not trigger on")
        by_type.setdefault(resource_type, []).append(query)
    result = []
    for trigger in triggers:
        parts = [p for p in (trigger.criteria, *by_type.get(trigger.resource_type, ())) if p]
        result.append(Trigger(trigger.resource_type, "&".join(parts), trigger.interactions))
    return tuple(result)


def _non_negative(value: Any, name: str) -> int:
    if value is None:
        return 0
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise invalid(f"{name} must be a non-negative integer")
    return value
