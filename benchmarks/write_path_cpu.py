"""CPU cost of the write path and of delivering every version to the consumers, in-process.

Loads the first ``--bundles`` Synthea transaction Bundles (``../shared/data/synthea``) through
``fhirhub.core.loading.load_document`` into a fresh SQLite store with the dispatcher running,
waits until every consumer has received every version, and prints this process's CPU
milliseconds per resource (all threads: the writer and the consumers) and the wall rate.

CPU time is steadier than wall time on a shared machine, so this is the script for A/B
comparisons of two checkouts, alternating, with the same interpreter::

    PYTHONPATH=/path/to/checkout-a .venv/bin/python benchmarks/write_path_cpu.py
    PYTHONPATH=/path/to/checkout-b .venv/bin/python benchmarks/write_path_cpu.py

It runs with the listeners off and, unless ``FHIRHUB_PLUGINS`` says otherwise, without the
MPI, the hello example and the OSCAR adapter. To compare checkouts with different plugin sets,
name the plugins both have, e.g. ``FHIRHUB_PLUGINS=hl7,dicom,security,audit,integrity``.
"""

from __future__ import annotations

import argparse
import gc
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

SYNTHEA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "synthea"


def start_dispatcher(hub: Any) -> Any:
    """The hub's dispatcher, started (older checkouts keep it in ``hub.extra``)."""
    dispatcher = getattr(hub, "dispatcher", None)
    if dispatcher is None:
        from fhirhub.core.dispatcher import Dispatcher

        dispatcher = Dispatcher(hub)
        hub.extra["dispatcher"] = dispatcher
    dispatcher.start()
    return dispatcher


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundles", type=int, default=30)
    parser.add_argument("--synthea", type=Path, default=SYNTHEA)
    args = parser.parse_args()
    os.environ.update(
        FHIRHUB_LISTENERS="off",
        FHIRHUB_HL7_PORT="off",
        FHIRHUB_DICOM_PORT="off",
        FHIRHUB_AUTH="off",
    )
    os.environ.setdefault("FHIRHUB_PLUGINS", "-mpi,-hello,-oscar")
    from fhirhub.core.hub import build_hub
    from fhirhub.core.loading import load_document
    from fhirhub.core.settings import Settings

    files = sorted(args.synthea.glob("*.json"))[: args.bundles]
    documents = [orjson.loads(path.read_bytes()) for path in files]
    with tempfile.TemporaryDirectory() as folder:
        settings = Settings(db=f"sqlite:///{folder}/hub.db", data_dir=Path(folder))
        hub = build_hub(settings)
        dispatcher = start_dispatcher(hub)
        # Start-up's garbage is collected before timing: a collection of it inside the window
        # is a one-time cost that moved the per-resource figure by up to a tenth between runs.
        gc.collect()
        cpu, wall = time.process_time(), time.perf_counter()
        resources = sum(load_document(hub, document) for document in documents)
        if not dispatcher.wait_idle(600):
            raise SystemExit("the consumers did not catch up within 600 s")
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        dispatcher.stop()
        hub.store.engine.dispose()
    print(
        f"{resources} resources: {1000 * cpu / resources:.3f} CPU ms/resource, "
        f"{resources / wall:.0f} resources/s wall"
    )


if __name__ == "__main__":
    main()
