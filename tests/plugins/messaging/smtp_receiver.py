"""A small real SMTP server on loopback for the email tests (RFC 5321: greeting, EHLO/HELO,
MAIL, RCPT, DATA with dot-stuffing, RSET, NOOP, QUIT); it keeps what it receives.

No STARTTLS and no AUTH: the hub's client speaks plain SMTP to a server that offers neither.
"""

from __future__ import annotations

import socketserver
import threading
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any


@dataclass
class Received:
    sender: str
    recipients: list[str]
    message: EmailMessage


@dataclass
class _State:
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    offer_starttls: bool = False
    verbs: list[str] = field(default_factory=list)


class _Handler(socketserver.StreamRequestHandler):
    server: _Server

    def reply(self, line: str) -> None:
        self.wfile.write(line.encode() + b"\r\n")
        self.wfile.flush()

    def handle(self) -> None:
        self.reply("220 localhost test SMTP ready")
        sender, recipients = "", []
        while True:
            raw = self.rfile.readline(4096)
            if not raw:
                return
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            verb = line.split(" ", 1)[0].upper()
            with self.server.state.lock:
                self.server.state.verbs.append(verb)
            if verb == "EHLO":
                self.reply("250-localhost")
                if self.server.state.offer_starttls:
                    self.reply("250-STARTTLS")
                self.reply("250 8BITMIME")
            elif verb == "STARTTLS":  # offered to see that clients ask; no TLS here
                self.reply("454 TLS not available here")
            elif verb == "HELO":
                self.reply("250 localhost")
            elif verb == "MAIL":
                sender, recipients = line.split(":", 1)[1].strip().strip("<>"), []
                self.reply("250 OK")
            elif verb == "RCPT":
                recipients.append(line.split(":", 1)[1].strip().strip("<>"))
                self.reply("250 OK")
            elif verb == "DATA":
                self.reply("354 End data with <CR><LF>.<CR><LF>")
                lines = []
                while (chunk := self.rfile.readline()) not in (b".\r\n", b""):
                    lines.append(chunk[1:] if chunk.startswith(b"..") else chunk)
                message = message_from_bytes(b"".join(lines), policy=policy.default)
                with self.server.state.lock:
                    self.server.state.received.append(
                        Received(sender, recipients, message)  # type: ignore[arg-type]
                    )
                self.reply("250 OK: queued")
            elif verb in ("RSET", "NOOP"):
                self.reply("250 OK")
            elif verb == "QUIT":
                self.reply("221 Bye")
                return
            else:
                self.reply("502 Command not implemented")


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    state: _State


class SmtpReceiver:
    """``with SmtpReceiver(port) as smtp:`` serves on 127.0.0.1:port; ``smtp.received``, and
    the commands clients sent (``smtp.verbs``). ``offer_starttls`` advertises STARTTLS (and
    refuses it: there is no certificate here), to see that a client asks for it."""

    def __init__(self, port: int = 0, offer_starttls: bool = False) -> None:
        self._server = _Server(("127.0.0.1", port), _Handler)
        self._server.state = _State(offer_starttls=offer_starttls)
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def received(self) -> list[Received]:
        with self._server.state.lock:
            return list(self._server.state.received)

    @property
    def verbs(self) -> list[str]:
        with self._server.state.lock:
            return list(self._server.state.verbs)

    def __enter__(self) -> SmtpReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
