"""A hub with :class:`HeaderAuth` served by uvicorn in its own process, to be killed.

    python -m tests.plugins.audit.crash_server PORT DATABASE_URL DATA_DIR [--slow-writer]

``--slow-writer`` makes the batch writer wait an hour between batches (and never wake for a
full batch), so that a kill always lands before the events are stored: the worst case for
durability, which the journal must cover.
"""

from __future__ import annotations

import sys
from pathlib import Path

import uvicorn

from fhirhub.core.http.app import create_app
from fhirhub.plugins.audit import writer
from tests.plugins.audit.header_auth import auth_hub


def main() -> None:
    port, database_url, data_dir = int(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
    if "--slow-writer" in sys.argv:
        writer.AuditWriter.__init__.__defaults__ = (3600.0, 10**9)
    hub = auth_hub(database_url, data_dir)
    uvicorn.run(create_app(hub=hub), host="127.0.0.1", port=port, log_level="warning")


if __name__ == "__main__":
    main()
