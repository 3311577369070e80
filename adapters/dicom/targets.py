"""Which remote PACS ``$pacs-query`` and ``$pacs-retrieve`` may contact.

A PACS named by an Organization's ``Endpoint`` is an address written into the database, and
the hub connects to it from inside the hospital network: without a check, whoever can write an
Endpoint can make the hub open associations anywhere (server-side request forgery), including
to its own DICOM listener, which would answer as a trusted node. So:

* only admins write Endpoints (``plugin.resource_before_write``);
* an Endpoint's target must be on ``[plugin.dicom] pacs_allowed`` (``"host:port"``, or
  ``"host"`` for any port); the hub-wide ``[plugin.dicom] pacs`` is allowed by being
  configured;
* the hub never queries itself: a target whose AE title is the hub's own, or whose address
  is one of this machine's and whose port is the hub's DICOM port, is refused whatever the
  allow-list says;
* the host name is resolved once, checked, and the association is opened to the address that
  was checked (a name that resolves differently a moment later cannot slip through).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable

from fhirhub.adapters.dicom.config import RemoteNode


class TargetRefused(ValueError):
    """The PACS target may not be contacted (not allowed, or the hub itself)."""


def allowed(node: RemoteNode, allow_list: Iterable[str]) -> bool:
    """Whether ``host:port`` (or ``host`` alone, any port) on the list names the node. Names
    compare case-insensitively; no wildcards, no address ranges."""
    host = node.host.strip().lower().strip("[]")
    for entry in allow_list:
        entry = entry.strip().lower()
        entry_host, sep, entry_port = entry.rpartition(":")
        if sep and entry_port.isdigit() and not entry_host.endswith(":"):
            if entry_host.strip("[]") == host and int(entry_port) == node.port:
                return True
        elif entry.strip("[]") == host:
            return True
    return False


def resolve(host: str) -> list[str]:
    """Every address ``host`` resolves to (an IP literal: itself)."""
    try:
        infos = socket.getaddrinfo(host.strip("[]"), None, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as exc:
        raise TargetRefused(f"PACS host {host!r} does not resolve: {exc}") from exc
    return sorted({str(info[4][0]) for info in infos})


def is_local_address(address: str) -> bool:
    """Whether ``address`` reaches this machine: loopback, unspecified, or bound to one of
    its interfaces (a socket can be bound to it)."""
    ip = ipaddress.ip_address(address.split("%")[0])
    if ip.is_loopback or ip.is_unspecified:
        return True
    family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind((address, 0))
        except OSError:
            return False
    return True


def checked_target(
    node: RemoteNode,
    *,
    own_aet: str,
    own_port: int | None,
    allow_list: Iterable[str] | None,
) -> RemoteNode:
    """The node to associate with, its host replaced by the checked address. ``allow_list``
    None: the target was configured by the operator (``[plugin.dicom] pacs``). Raises
    :class:`TargetRefused`."""
    if node.aet.strip() == own_aet.strip():
        raise TargetRefused(f"{node.aet} is this hub's own AE title: the hub never queries itself")
    if allow_list is not None and not allowed(node, allow_list):
        raise TargetRefused(f"PACS {node.host}:{node.port} is not on [plugin.dicom] pacs_allowed")
    addresses = resolve(node.host)
    if own_port is not None and node.port == own_port:
        if any(is_local_address(address) for address in addresses):
            raise TargetRefused(
                f"{node.host}:{node.port} is this hub's own DICOM listener: "
                "the hub never queries itself"
            )
    return RemoteNode(node.aet, addresses[0], node.port)
