"""Routes by the C-STORE association's AE titles: the DICOM adapter records the calling and
called AE titles of what it receives, the SDK's archive access gives them, and only the study
that came from the routed modality (to the routed title) is analysed."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from fhirhub.plugins.imaging_ai.runs import run_store
from fhirhub.sdk import acting_as, dicom_instances, system_for
from tests.plugins.imaging_ai.helpers import (
    imaging_hub,
    phantom_study,
    study_id,
    wait_for_runs,
    write,
)
from tests.security.dicom_hub import NODE_AET, TENANT_AES, dcmtk


def test_only_the_routed_calling_and_called_aet_is_analysed(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    routes = [{"model": "*", "calling_aets": ["XRAY_WARD3"], "called_aets": ["AI_CHEST"]}]
    tenants = {**TENANT_AES, "XRAY_WARD3": "org-a", "XRAY_ER": "org-a"}
    with imaging_hub(
        sqlite_url, tmp_path, monkeypatch, dicom={"tenants": tenants}, routes=json.dumps(routes)
    ) as served:
        sent = {}
        # the same tenant, three senders: only the ward's modality addressing AI_CHEST is routed
        for calling, called in (
            ("XRAY_ER", "AI_CHEST"),
            ("XRAY_WARD3", NODE_AET),
            ("XRAY_WARD3", "AI_CHEST"),
        ):
            datasets = phantom_study(2, seed=len(sent) + 5)
            paths = write(tmp_path / f"{calling}-{called}", datasets)
            result = dcmtk(
                "storescu", "-aet", calling, "-aec", called, "127.0.0.1",
                str(served.dicom_port), *map(str, paths),
            )  # fmt: skip
            assert result.returncode == 0, result.stderr
            sent[(calling, called)] = str(datasets[0].StudyInstanceUID)
        assert served.archive.drain()
        # the archive recorded the association's titles; plugins read them through the SDK
        with acting_as(system_for("org-a")):
            for (calling, called), uid in sent.items():
                refs = dicom_instances(served.hub, uid)
                assert len(refs) == 2
                assert {(r.calling_aet, r.called_aet) for r in refs} == {(calling, called)}
        routed = study_id(served, sent[("XRAY_WARD3", "AI_CHEST")])
        (run,) = wait_for_runs(served, routed)
        assert run.status == "done", run.reason
        time.sleep(2)  # four quiet periods more: the other studies stay unanalysed
        for key in (("XRAY_ER", "AI_CHEST"), ("XRAY_WARD3", NODE_AET)):
            other = study_id(served, sent[key])
            assert run_store(served.hub).list(None, study_id=other) == [], key
