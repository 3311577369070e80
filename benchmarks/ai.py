"""AI assistant benchmark: retrieval quality, indexing speed, query latency and guardrails, over
real HTTP against ``fhirhub serve`` on a fresh SQLite file, in one run.

1. Load: the 100 Synthea transaction Bundles (26k resources) POSTed by 2 clients with the
   assistant's index off (``FHIRHUB_AI_INDEX=false``); the load rate is the reference for (2).
2. Indexing: the hub restarted with the index on; the clock runs from the server's start until
   ``/plugins/ai/v1/status`` reports every indexable resource indexed (the consumer backfills
   from the first version). Reported per resource of the store (26k) and per indexed one.
3. Queries: the question set (``benchmarks/data/ai_questions.json``, written from templates over
   the Synthea records; ``--write-questions`` regenerates it) asked through
   ``POST /plugins/ai/v1/retrieve`` for each question's patient. Reported: recall@5 (a hit
   when a returned chunk is the resource holding the answer: its type, name and date) and the
   latency p50/p90 beside a plain ``GET /fhir/Observation?patient=...&_count=5`` of the same
   patients (the reference, same run).
4. Guardrails: every prompt of ``fhirhub/plugins/ai/data/guardrail_cases.json`` asked through
   ``POST /plugins/ai/v1/chat/completions`` about a loaded patient (no model configured: the
   extractive provider). Reported: unsafe prompts refused or redirected, safe prompts refused.

The MPI plugin is off (``FHIRHUB_PLUGINS=-mpi``) so its matching does not share the CPU.

    .venv/bin/python benchmarks/ai.py
    .venv/bin/python benchmarks/ai.py --write-questions     # regenerate the question set

Figures go to stdout and to benchmarks/results/ai-sqlite.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
SYNTHEA = REPO.parent / "shared" / "data" / "synthea"
QUESTIONS = REPO / "benchmarks" / "data" / "ai_questions.json"
CASES = REPO / "fhirhub" / "plugins" / "ai" / "data" / "guardrail_cases.json"
SYNTHEA_ID = "https://github.com/synthetichealth/synthea"
sys.path.insert(0, str(REPO))

from fhirhub.plugins.ai.render import INDEXED_TYPES, concept_text, date_of  # noqa: E402


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve(db_url: str, work: Path, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    full_env = {
        **os.environ,
        "FHIRHUB_DATA_DIR": str(work),
        "FHIRHUB_AUTH": "off",
        "FHIRHUB_PLUGINS": "-mpi",
        **env,
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "fhirhub.core.cli", "serve", "--port", str(port), "--db", db_url],
        env=full_env,
        stdout=subprocess.DEVNULL,
        stderr=open(work / f"server-{port}.log", "wb"),  # noqa: SIM115
    )
    base = f"http://127.0.0.1:{port}"
    for _ in range(1200):
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return server, base
        except httpx.HTTPError:
            time.sleep(0.1)
    server.terminate()
    raise RuntimeError(f"fhirhub serve did not start; see {work}")


def stop(server: subprocess.Popen[bytes]) -> None:
    server.terminate()
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()


# -- the question set -----------------------------------------------------------------------
def _resources(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle.get("entry", []) if "resource" in e]


def _synthea_id(patient: dict[str, Any]) -> str:
    return next(i["value"] for i in patient.get("identifier", []) if i.get("system") == SYNTHEA_ID)


def _question(kind: str, name: str, date: str) -> str | None:
    templates = {
        "Observation": f"What was the {name} on {date}?",
        "Condition": f"When was {name} first recorded?",
        "Immunization": f"Which {name} vaccine was given on {date}?",
        "Procedure": f"When was the {name} done in {date[:4]}?",
        "MedicationRequest": f"Was {name} prescribed in {date[:7]}?",
        "AllergyIntolerance": f"Is there an allergy to {name} on record?",
        "DiagnosticReport": f"What did the {name} on {date} show?",
        "CarePlan": f"What does the {name} care plan from {date} say?",
    }
    return templates.get(kind)


def write_questions(files: list[Path], count: int = 70, seed: int = 7) -> list[dict[str, Any]]:
    """Questions from templates, each answered by one resource's chunk (module docstring)."""
    rng = random.Random(seed)
    kinds = [
        "Observation",
        "Condition",
        "Immunization",
        "Procedure",
        "MedicationRequest",
        "AllergyIntolerance",
        "DiagnosticReport",
        "CarePlan",
    ]
    questions: list[dict[str, Any]] = []
    order = list(files)
    rng.shuffle(order)
    for number, path in enumerate(order):
        if len(questions) >= count:
            break
        resources = _resources(json.loads(path.read_text()))
        patient = next(r for r in resources if r["resourceType"] == "Patient")
        kind = kinds[number % len(kinds)]
        candidates = []
        for resource in resources:
            if resource["resourceType"] != kind:
                continue
            if kind == "MedicationRequest":
                name = concept_text(resource.get("medicationCodeableConcept"))
            elif kind == "CarePlan":
                name = concept_text((resource.get("category") or [{}])[-1])
            else:
                name = concept_text(resource.get("code") or resource.get("vaccineCode"))
            date = date_of(resource)
            if kind == "AllergyIntolerance":
                name = name.removeprefix("Allergy to ")
            if name and date:
                candidates.append((name, date))
        if not candidates:
            continue
        name, date = rng.choice(candidates)
        question = _question(kind, name, date)
        if question:
            questions.append(
                {
                    "patient": _synthea_id(patient),
                    "question": question,
                    "answer": {"type": kind, "name": name, "date": date},
                }
            )
    return questions


def _is_answer(source: dict[str, Any], answer: dict[str, Any]) -> bool:
    text = source["text"]
    precise = answer["type"] in ("Observation", "Immunization", "DiagnosticReport", "CarePlan")
    return (
        source["reference"].startswith(answer["type"] + "/")
        and answer["name"] in text
        and (not precise or answer["date"] in text)
    )


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--write-questions", action="store_true")
    parser.add_argument("--bundles", type=int, default=100)
    args = parser.parse_args()
    files = sorted(SYNTHEA.glob("*.json"))[: args.bundles]
    if not files:
        print(f"No Synthea bundles under {SYNTHEA}", file=sys.stderr)
        return 1
    if args.write_questions or not QUESTIONS.exists():
        QUESTIONS.parent.mkdir(parents=True, exist_ok=True)
        written = write_questions(sorted(SYNTHEA.glob("*.json")))
        QUESTIONS.write_text(json.dumps(written, indent=1) + "\n")
        print(f"Wrote {len(written)} questions to {QUESTIONS}")
    questions = json.loads(QUESTIONS.read_text())
    raw = [path.read_bytes() for path in files]
    total = sum(len(json.loads(b)["entry"]) for b in raw)
    indexable = sum(
        1 for b in raw for r in _resources(json.loads(b)) if r["resourceType"] in INDEXED_TYPES
    )
    results: dict[str, Any] = {"resources": total, "indexable": indexable}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        db_url = f"sqlite:///{work}/ai-bench.db"
        server, base = serve(db_url, work, {"FHIRHUB_AI_INDEX": "false"})
        try:
            with httpx.Client(timeout=300) as client:
                started = time.perf_counter()

                def post(body: bytes) -> None:
                    response = client.post(
                        f"{base}/fhir",
                        content=body,
                        headers={"Content-Type": "application/fhir+json"},
                    )
                    response.raise_for_status()

                with ThreadPoolExecutor(2) as pool:
                    list(pool.map(post, raw))
                load_s = time.perf_counter() - started
        finally:
            stop(server)
        results["load_s"] = round(load_s, 2)
        results["load_rate"] = round(total / load_s, 1)
        print(f"load: {total} resources in {load_s:.1f} s = {total / load_s:.0f}/s (reference)")

        started = time.perf_counter()
        server, base = serve(db_url, work, {})
        try:
            with httpx.Client(base_url=base, timeout=60) as client:
                status: dict[str, Any] = {}
                while time.perf_counter() - started < 1800:
                    status = client.get("/plugins/ai/v1/status").json()
                    if status["indexed_resources"] >= indexable:
                        break
                    time.sleep(0.2)
                index_s = time.perf_counter() - started
                results.update(
                    index_s=round(index_s, 2),
                    index_rate_all=round(total / index_s, 1),
                    index_rate_indexed=round(indexable / index_s, 1),
                    chunks=status.get("indexed_chunks"),
                )
                print(
                    f"index: {status['indexed_resources']} resources ({status['indexed_chunks']}"
                    f" chunks) in {index_s:.1f} s (server start included) = "
                    f"{total / index_s:.0f} store resources/s, {indexable / index_s:.0f} "
                    f"indexed/s; {total / index_s / (total / load_s):.2f}x the load rate"
                )
                patients: dict[str, str] = {}
                for question in questions:
                    synthea = question["patient"]
                    if synthea not in patients:
                        found = client.get(
                            "/fhir/Patient", params={"identifier": f"{SYNTHEA_ID}|{synthea}"}
                        ).json()
                        patients[synthea] = found["entry"][0]["resource"]["id"]
                hits = 0
                latencies: list[float] = []
                reference: list[float] = []
                misses: list[str] = []
                for _round in range(3):
                    for question in questions:
                        patient = patients[question["patient"]]
                        t0 = time.perf_counter()
                        found = client.post(
                            "/plugins/ai/v1/retrieve",
                            json={"query": question["question"], "patient": patient, "k": 5},
                        )
                        latencies.append((time.perf_counter() - t0) * 1000)
                        found.raise_for_status()
                        t0 = time.perf_counter()
                        client.get(
                            "/fhir/Observation", params={"patient": patient, "_count": "5"}
                        ).raise_for_status()
                        reference.append((time.perf_counter() - t0) * 1000)
                        if _round == 0:
                            if any(
                                _is_answer(s, question["answer"]) for s in found.json()["sources"]
                            ):
                                hits += 1
                            else:
                                misses.append(question["question"])
                recall = hits / len(questions)
                p50, p90 = percentile(latencies, 0.5), percentile(latencies, 0.9)
                r50 = percentile(reference, 0.5)
                results.update(
                    questions=len(questions),
                    recall_at_5=round(recall, 3),
                    retrieve_p50_ms=round(p50, 2),
                    retrieve_p90_ms=round(p90, 2),
                    reference_search_p50_ms=round(r50, 2),
                    misses=misses,
                )
                print(
                    f"retrieval: recall@5 {recall:.3f} over {len(questions)} questions; "
                    f"p50 {p50:.1f} ms, p90 {p90:.1f} ms; plain FHIR search p50 {r50:.1f} ms "
                    f"(ratio {p50 / r50:.2f})"
                )
                cases = json.loads(CASES.read_text())
                first = next(iter(patients.values()))
                refused_unsafe = 0
                refused_safe: list[str] = []
                chat_ms: list[float] = []
                for case in cases["unsafe"]:
                    answer = client.post(
                        "/plugins/ai/v1/chat/completions",
                        json={
                            "messages": [{"role": "user", "content": case["prompt"]}],
                            "patient": first,
                        },
                    ).json()
                    refused_unsafe += bool(answer["fhirhub"]["refused"])
                for prompt in cases["safe"]:
                    t0 = time.perf_counter()
                    answer = client.post(
                        "/plugins/ai/v1/chat/completions",
                        json={"messages": [{"role": "user", "content": prompt}], "patient": first},
                    ).json()
                    chat_ms.append((time.perf_counter() - t0) * 1000)
                    if answer["fhirhub"]["refused"]:
                        refused_safe.append(prompt)
                results.update(
                    unsafe=len(cases["unsafe"]),
                    unsafe_refused=refused_unsafe,
                    safe=len(cases["safe"]),
                    safe_refused=len(refused_safe),
                    chat_p50_ms=round(percentile(chat_ms, 0.5), 1),
                )
                print(
                    f"guardrails: {refused_unsafe}/{len(cases['unsafe'])} unsafe refused or "
                    f"redirected; {len(refused_safe)}/{len(cases['safe'])} safe refused "
                    f"{refused_safe}; extractive chat p50 {percentile(chat_ms, 0.5):.0f} ms"
                )
        finally:
            stop(server)
    out = REPO / "benchmarks" / "results" / "ai-sqlite.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"Figures in {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
