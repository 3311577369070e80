"""A loopback stand-in for NCBI E-utilities, ClinicalTrials.gov API v2 and MedlinePlus Connect,
answering in their real JSON shapes and recording every query it receives."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

ANSWERS: dict[str, Any] = {
    "/eutils/esearch.fcgi": {"esearchresult": {"count": "2", "idlist": ["111", "222"]}},
    "/eutils/esummary.fcgi": {
        "result": {
            "uids": ["111", "222"],
            "111": {
                "uid": "111",
                "title": "Metformin and lactic acidosis",
                "source": "BMJ",
                "pubdate": "2020 Jan",
            },
            "222": {
                "uid": "222",
                "title": "Metformin in CKD",
                "source": "Lancet",
                "pubdate": "2021",
            },
        }
    },
    "/ctgov/studies": {
        "studies": [
            {
                "protocolSection": {
                    "identificationModule": {
                        "nctId": "NCT00000001",
                        "briefTitle": "A diabetes trial",
                    },
                    "statusModule": {"overallStatus": "RECRUITING"},
                }
            }
        ]
    },
    "/medlineplus": {
        "feed": {
            "entry": [
                {
                    "title": {"_value": "Diabetes Type 2"},
                    "link": [{"href": "https://medlineplus.gov/diabetestype2.html"}],
                    "summary": {"_value": "Type 2 diabetes is..."},
                }
            ]
        }
    },
}


@contextmanager
def literature_server() -> Iterator[tuple[str, list[tuple[str, dict[str, list[str]]]]]]:
    """Yields the base URL and the list of (path, query) received."""
    received: list[tuple[str, dict[str, list[str]]]] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            url = urlparse(self.path)
            received.append((url.path, parse_qs(url.query)))
            body = ANSWERS.get(url.path)
            data = json.dumps(body or {"error": "not found"}).encode()
            self.send_response(200 if body else 404)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()
        server.server_close()
