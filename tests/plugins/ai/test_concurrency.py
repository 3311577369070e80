"""Several clinicians of two tenants asking at once: every turn answered, recorded once, and
in its own tenant."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx


def test_concurrent_turns_are_all_recorded_in_their_tenant(served_hub: str) -> None:
    def ask(number: int) -> tuple[str, dict[str, Any]]:
        caller, patient = ("clin-a", "pa1") if number % 2 else ("clin-b", "pb1")
        response = httpx.post(
            f"{served_hub}/plugins/ai/v1/chat/completions",
            json={
                "messages": [{"role": "user", "content": f"latest potassium? ({number})"}],
                "patient": patient,
                "stream": number % 3 == 0,
            },
            headers={"X-Test-Caller": caller},
            timeout=60,
        )
        assert response.status_code == 200, response.text
        if number % 3 == 0:
            last = [line for line in response.text.splitlines() if line.startswith("data: {")][-1]
            import json

            return caller, json.loads(last[6:])["fhirhub"]
        return caller, response.json()["fhirhub"]

    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(ask, range(12)))
    answers = [meta["record"]["answer"] for _caller, meta in results]
    assert len(set(answers)) == 12
    for caller, meta in results:
        other = "clin-b" if caller == "clin-a" else "clin-a"
        mine = httpx.get(
            f"{served_hub}/fhir/{meta['record']['answer']}", headers={"X-Test-Caller": caller}
        )
        theirs = httpx.get(
            f"{served_hub}/fhir/{meta['record']['answer']}", headers={"X-Test-Caller": other}
        )
        assert (mine.status_code, theirs.status_code) == (200, 404)
