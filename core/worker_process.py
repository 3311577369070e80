"""The worker process: CPU-heavy consumers on another core, beside the API process.

Python runs one thread at a time per process. A consumer that scores every vital sign or
evaluates every subscription's criteria (``Consumer.worker_process``) shares the API
process's interpreter lock with the request handlers: a write load is slowed by all of the
consumer's work, even on a machine with a core to spare. ``fhirhub serve`` (one API
process) therefore starts a child process that serves those consumers, and the API
process's dispatcher leaves them out. Everything else stays where it was: the plugins'
start-up work, routes and schedules, and the other consumers.

Both processes open the same database. The store already serialises writers (SQLite's
write lock, PostgreSQL's log lock), and each consumer's cursor is saved in the database, so
a consumer moved to the worker resumes where the API process left it, and back again.

One socket links the two processes, for what must be fast:

* **Wake-ups.** After each commit a process tells the other which resource types it wrote
  (coalesced while the other is busy), so a consumer wakes at once instead of at its
  one-second poll.
* **Live messages.** What the worker publishes (``publish_live``: an alert for a dashboard,
  a websocket notification) reaches the API process's listeners, which hold the browsers'
  connections. With ``FHIRHUB_BROKER=redis://...`` the fan-out goes through Redis instead.

The worker ends when the socket closes (the API process stopped or was killed) or on
SIGTERM/SIGINT. ``/healthz`` reports ``worker-process`` failing until the worker says it serves
its consumers (it loads the hub for a few seconds: a load sent meanwhile would find its
consumers not yet running and the worker's start competing for the CPU). The API process
restarts a worker that died, after a pause (:data:`RESTART_PAUSE_S`); the consumers lose
nothing (at-least-once delivery from their saved cursors).
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

import orjson

from fhirhub.core.live import fanout_of

if TYPE_CHECKING:
    from fhirhub.core.hub import Hub
    from fhirhub.core.settings import Settings

log = logging.getLogger("fhirhub.worker")

#: The worker's end of the socket (a file descriptor number), set in its environment.
FD_ENV = "FHIRHUB_WORKER_FD"
#: Seconds between a worker's unexpected exit and its restart; doubled after each worker
#: that died within :data:`STEADY_S` of its start (one that cannot start), up to
#: :data:`MAX_RESTART_PAUSE_S`.
RESTART_PAUSE_S = 1.0
MAX_RESTART_PAUSE_S = 60.0
STEADY_S = 30.0
#: Seconds a stopping worker has to finish its deliveries before it is killed.
STOP_TIMEOUT_S = 20.0


def wanted(settings: Settings, api_processes: int = 1) -> bool:
    """Whether ``fhirhub serve`` starts a worker process (``FHIRHUB_WORKER_PROCESS``): "on",
    "off", or "auto" (the default): with one API process on a machine of more than one core.
    Several API processes (PostgreSQL) already spread the consumers between them."""
    choice = settings.worker_process.lower()
    if choice == "on":
        return True
    if choice == "off" or api_processes > 1:
        return False
    return (os.cpu_count() or 1) > 1


class Link:
    """One end of the socket between the API process and its worker: sends wake-ups and live
    messages on a thread of its own (a commit never waits for the other process), and acts on
    what arrives on another."""

    def __init__(self, hub: Hub, sock: socket.socket) -> None:
        self.hub = hub
        self._sock = sock
        self._lock = threading.Lock()
        self._pending_types: set[str] = set()
        self._pending_all = False
        self._messages: list[tuple[str, dict[str, Any]]] = []
        self._pending_ready = False
        self._ready = threading.Event()
        self._closed = threading.Event()
        #: Set when the other process said it serves its consumers (the worker, once started).
        self.peer_ready = threading.Event()
        self._sender = threading.Thread(target=self._send_loop, name="fhirhub-link-send")
        self._sender.daemon = True
        self._reader = threading.Thread(target=self._read_loop, name="fhirhub-link-read")
        self._reader.daemon = True

    def start(self) -> Link:
        self._sender.start()
        self._reader.start()
        return self

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def notify(self, types: set[str] | None) -> None:
        """Tell the other process that versions of ``types`` (None: any) were committed."""
        with self._lock:
            if types is None:
                self._pending_all = True
            else:
                self._pending_types |= types
        self._ready.set()

    def publish(self, channel: str, message: dict[str, Any]) -> None:
        """Hand a live message to the other process's listeners."""
        with self._lock:
            self._messages.append((channel, message))
        self._ready.set()

    def say_ready(self) -> None:
        """Tell the other process this one serves its consumers (sent by the sender thread:
        two threads writing one stream socket could interleave their lines)."""
        with self._lock:
            self._pending_ready = True
        self._ready.set()

    def close(self) -> None:
        self._closed.set()
        self._ready.set()
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()

    def _send_loop(self) -> None:
        while not self._closed.is_set():
            self._ready.wait()
            self._ready.clear()
            with self._lock:
                wake_all, types, messages = self._pending_all, self._pending_types, self._messages
                self._pending_all, self._pending_types, self._messages = False, set(), []
                ready, self._pending_ready = self._pending_ready, False
            lines = [orjson.dumps({"live": c, "message": m}) for c, m in messages]
            if ready:
                lines.append(orjson.dumps({"ready": True}))
            if wake_all or types:
                lines.append(orjson.dumps({"wake": None if wake_all else sorted(types)}))
            if not lines or self._closed.is_set():
                continue
            try:
                self._sock.sendall(b"\n".join(lines) + b"\n")
            except OSError:
                self._closed.set()

    def _read_loop(self) -> None:
        try:
            with contextlib.suppress(OSError, ValueError), self._sock.makefile("rb") as stream:
                for line in stream:
                    try:
                        self._act(orjson.loads(line))
                    except Exception:  # one bad message must not end the link
                        log.exception("Ignoring a message from the other process")
        finally:
            # The other process is gone (or the link was closed): a worker ends with it.
            self._closed.set()
            self._ready.set()

    def _act(self, item: dict[str, Any]) -> None:
        if item.get("ready") is True:
            self.peer_ready.set()
        elif "wake" in item:
            dispatcher = self.hub.dispatcher
            if dispatcher is not None:
                types = item["wake"]
                dispatcher.wake(None if types is None else set(types))
        elif "live" in item and isinstance(item.get("message"), dict):
            fanout_of(self.hub).deliver_here(str(item["live"]), item["message"])


class WorkerProcess:
    """The API process's side: starts the worker, links it, restarts it when it dies."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.link: Link | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._stopping = threading.Event()
        self._watcher: threading.Thread | None = None
        self._started_at = 0.0
        self._restarts = 0

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def ready(self) -> bool:
        """Alive and serving its consumers (it takes a few seconds to load the hub)."""
        link = self.link
        return self.alive and link is not None and link.peer_ready.is_set()

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def notify(self, types: set[str] | None) -> None:
        """Wake the worker's consumers (versions of ``types`` were committed here)."""
        link = self.link
        if link is not None:
            link.notify(types)

    def start(self) -> WorkerProcess:
        self._spawn()
        self._watcher = threading.Thread(target=self._watch, name="fhirhub-worker-watch")
        self._watcher.daemon = True
        self._watcher.start()
        return self

    def stop(self) -> None:
        """Ask the worker to finish (SIGTERM), wait for it, kill it past the timeout."""
        self._stopping.set()
        if self._watcher is not None:  # no restart can be under way past this
            self._watcher.join(timeout=10)
        process = self._process
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                log.warning("The worker process did not stop in time; killing it")
                process.kill()
                process.wait()
        self._unlink()

    def _spawn(self) -> None:
        parent_end, child_end = socket.socketpair()
        try:
            self._process = subprocess.Popen(
                # -P: the working directory is not put on the import path.
                [sys.executable, "-P", "-m", "fhirhub.core.worker_process"],
                env={**os.environ, FD_ENV: str(child_end.fileno())},
                pass_fds=[child_end.fileno()],
                stdin=subprocess.DEVNULL,
                # Its own session: a terminal's Ctrl-C reaches the API process, which stops
                # the worker itself (a worker stopping first would look like a crash).
                start_new_session=True,
            )
        except BaseException:
            parent_end.close()
            raise
        finally:
            child_end.close()
        self._started_at = time.monotonic()
        # The settings go over the socket, not the environment: the plugins' tables may hold
        # credentials (an SMTP password, an EMR's account).
        settings = self.hub.settings.model_dump(mode="json")
        try:
            parent_end.sendall(orjson.dumps({"settings": settings}) + b"\n")
        except OSError:
            parent_end.close()
            raise
        self.link = Link(self.hub, parent_end).start()
        log.info("Worker process %s serves the consumers marked worker_process", self.pid)

    def _unlink(self) -> None:
        if self.link is not None:
            self.link.close()
            self.link = None

    def _watch(self) -> None:
        pause = RESTART_PAUSE_S
        while not self._stopping.is_set():
            process = self._process
            if process is None or process.poll() is None:
                self._stopping.wait(0.2)
                continue
            if self._stopping.is_set():
                return
            if time.monotonic() - self._started_at < STEADY_S:
                pause = min(pause * 2, MAX_RESTART_PAUSE_S) if self._restarts else pause
            else:
                pause = RESTART_PAUSE_S
            log.error(
                "The worker process exited (status %s); restarting it in %.0f s",
                process.returncode,
                pause,
            )
            self._unlink()
            if self._stopping.wait(pause):
                return
            self._restarts += 1
            try:
                self._spawn()
            except Exception:  # (out of processes or descriptors): tried again after a pause
                log.exception("Starting the worker process failed")
                self._started_at = time.monotonic()


def _first_line(sock: socket.socket) -> bytes:
    """The first line on the socket, read a byte at a time: what follows is the link's."""
    line = bytearray()
    while not line.endswith(b"\n"):
        byte = sock.recv(1)
        if not byte:
            raise SystemExit("The API process closed the link before sending the settings")
        line += byte
    return bytes(line)


def run_worker() -> int:
    """The worker's main: serve the ``worker_process`` consumers until told to stop."""
    from fhirhub.core.hub import build_hub
    from fhirhub.core.settings import Settings

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s [worker]: %(message)s"
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    sock = socket.socket(fileno=int(os.environ.pop(FD_ENV)))
    settings = Settings.model_validate(orjson.loads(_first_line(sock))["settings"])
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    hub = build_hub(settings)
    dispatcher = hub.dispatcher
    assert dispatcher is not None
    dispatcher.placement = "worker"
    link = Link(hub, sock)
    hub.link = link
    fanout_of(hub).relay = link.publish
    dispatcher.start()  # before the link: its wake-ups go to a started dispatcher
    link.start()
    # As in the API process (``create_app(freeze_heap=True)``): what the hub loaded lives as
    # long as the process, and full collections walking it again cost pauses under load.
    gc.collect()
    gc.freeze()
    link.say_ready()
    log.info("Worker process serving: %s", ", ".join(sorted(dispatcher.consumers)) or "nothing")
    parent = os.getppid()
    # The socket closes when the API process ends; its id changing is a second sign.
    while not stop.is_set() and not link.closed and os.getppid() == parent:
        stop.wait(0.5)
    dispatcher.stop()
    link.close()
    hub.close()
    return 0


if __name__ == "__main__":
    # SIGINT (Ctrl-C in a terminal reaches the whole process group) is a request to stop
    # like SIGTERM: ignore it until the handler is installed.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.exit(run_worker())
