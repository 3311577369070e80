"""The plugin's tables on both backends: a study's quiet period restarts with each change,
and only one claim of a quiet study wins (several API processes never analyse it twice)."""

from __future__ import annotations

from fhirhub.plugins.imaging_ai.runs import RunStore
from fhirhub.sdk import Hub


def test_quiet_claim_once_and_runs_per_tenant(hub: Hub) -> None:
    store = RunStore(hub)
    store.study_changed("org-a", "s1", "1.2.3", now=100.0)
    store.study_changed("org-b", "s1", "1.2.3", now=100.0)  # same id, another tenant
    assert sorted(store.quiet_studies(10, now=105.0)) == []
    store.study_changed("org-a", "s1", "1.2.3", now=104.0)  # a new instance: quiet again later
    assert sorted(store.quiet_studies(10, now=111.0)) == [("org-b", "s1")]
    assert sorted(store.quiet_studies(10, now=114.0)) == [("org-a", "s1"), ("org-b", "s1")]
    assert store.claim("org-a", "s1") is True
    assert store.claim("org-a", "s1") is False  # the second process loses
    assert store.quiet_studies(10, now=200.0) == [("org-b", "s1")]
    assert store.quiet_studies(10, now=300.0) == [("org-b", "s1")]  # claimed: not offered
    store.study_changed("org-a", "s1", "1.2.3", now=300.0)  # a change after the claim:
    assert store.quiet_studies(10, now=305.0) == [("org-b", "s1")]  # pending once quiet
    assert sorted(store.quiet_studies(10, now=400.0)) == [("org-a", "s1"), ("org-b", "s1")]
    assert store.analysed_inputs("org-a", "s1") is None
    store.set_analysed_inputs("org-a", "s1", "f1")
    store.set_analysed_inputs("org-a", "s1", "f2")
    assert store.analysed_inputs("org-a", "s1") == "f2"
    assert store.analysed_inputs("org-b", "s1") is None

    run = store.start("org-a", "s1", "1.2.3", "m", "1")
    store.finish(run, "failed", reason="no pixel data")
    assert [r.reason for r in store.list("org-a")] == ["no pixel data"]
    assert store.list("org-b") == []
    assert len(store.list(None)) == 1
