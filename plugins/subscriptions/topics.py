"""SubscriptionTopics in R4: ``Basic`` resources carrying the R5 cross-version extensions, as
the Subscriptions Backport IG represents them for R4 servers.

A topic names a canonical URL and what triggers it: resource types, the interactions that
count (create, update, delete) and an optional query a version must match::

    {"resourceType": "Basic",
     "code": {"coding": [{"system": "http://hl7.org/fhir/fhir-types", "code": "SubscriptionTopic"}]},
     "extension": [
       {"url": ".../extension-SubscriptionTopic.url", "valueUri": "http://example.org/topic/high-glucose"},
       {"url": ".../extension-SubscriptionTopic.resourceTrigger", "extension": [
         {"url": "resource", "valueUri": "Observation"},
         {"url": "supportedInteraction", "valueCode": "create"},
         {"url": "queryCriteria", "extension": [{"url": "current", "valueString": "code=http://loinc.org|2339-0"}]}]}]}
"""

from __future__ import annotations

from typing import Any

from fhirhub.plugins.subscriptions.spec import Trigger, extension_value
from fhirhub.sdk import RESOURCE_TYPES, SYSTEM, Hub, acting_as, search

R5 = "http://hl7.org/fhir/5.0/StructureDefinition/extension-SubscriptionTopic."
TOPIC_URL = R5 + "url"
RESOURCE_TRIGGER = R5 + "resourceTrigger"
TOPIC_CODE = "http://hl7.org/fhir/fhir-types|SubscriptionTopic"
INTERACTIONS = ("create", "update", "delete")


def topic_triggers(basic: dict[str, Any]) -> tuple[str, tuple[Trigger, ...]] | None:
    """(canonical URL, triggers) of a topic Basic, or None when it is not a usable topic."""
    url = extension_value(basic, TOPIC_URL)
    if not url:
        return None
    triggers = []
    for extension in basic.get("extension", ()):
        if extension.get("url") != RESOURCE_TRIGGER:
            continue
        resource = str(extension_value(extension, "resource") or "").rsplit("/", 1)[-1]
        if resource not in RESOURCE_TYPES:
            continue
        interactions = tuple(
            str(e.get("valueCode"))
            for e in extension.get("extension", ())
            if e.get("url") == "supportedInteraction" and e.get("valueCode") in INTERACTIONS
        ) or ("create", "update")
        query = extension_value(
            next(
                (e for e in extension.get("extension", ()) if e.get("url") == "queryCriteria"),
                None,
            ),
            "current",
        )
        criteria = str(query or "")
        if criteria.startswith(f"{resource}?"):
            criteria = criteria.split("?", 1)[1]
        triggers.append(Trigger(resource, criteria, interactions))
    return (str(url), tuple(triggers)) if triggers else None


def known_topics(hub: Hub) -> dict[str, tuple[Trigger, ...]]:
    """Every topic stored in the hub (topics are definitions: read as the system)."""
    topics: dict[str, tuple[Trigger, ...]] = {}
    with acting_as(SYSTEM):
        for basic in search(hub, "Basic", {"code": TOPIC_CODE, "_count": "1000"}):
            parsed = topic_triggers(basic)
            if parsed is not None:
                topics[parsed[0]] = parsed[1]
    return topics
