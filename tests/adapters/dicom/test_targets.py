"""Which remote PACS the hub may contact: the allow-list and the refusal of itself."""

from __future__ import annotations

import pytest

from fhirhub.adapters.dicom.config import RemoteNode
from fhirhub.adapters.dicom.targets import TargetRefused, allowed, checked_target, is_local_address


def test_allow_list_entries_name_a_host_and_port_or_a_host() -> None:
    pacs = RemoteNode("PACS", "PACS.example", 104)
    assert allowed(pacs, ["pacs.example:104"])
    assert allowed(pacs, ["pacs.example"])  # any port
    assert not allowed(pacs, ["pacs.example:105", "other.example", "example"])
    assert allowed(RemoteNode("P", "::1", 104), ["[::1]:104"])
    assert not allowed(pacs, [])


def test_local_addresses() -> None:
    assert is_local_address("127.0.0.1") and is_local_address("127.0.0.2")
    assert is_local_address("0.0.0.0") and is_local_address("::1")
    assert not is_local_address("192.0.2.1")  # TEST-NET-1 (RFC 5737): never assigned


def test_checked_target_refuses_the_hub_itself_and_connects_to_the_checked_address() -> None:
    def check(node: RemoteNode, allow: list[str] | None = None) -> RemoteNode:
        return checked_target(node, own_aet="FHIRHUB", own_port=11112, allow_list=allow)

    with pytest.raises(TargetRefused, match="own AE title"):
        check(RemoteNode("FHIRHUB", "192.0.2.1", 104))
    with pytest.raises(TargetRefused, match="itself"):
        check(RemoteNode("PACS", "localhost", 11112), allow=["localhost"])
    with pytest.raises(TargetRefused, match="pacs_allowed"):
        check(RemoteNode("PACS", "192.0.2.1", 104), allow=["192.0.2.2"])
    with pytest.raises(TargetRefused, match="does not resolve"):
        check(RemoteNode("PACS", "no-such-host.invalid", 104))
    assert check(RemoteNode("PACS", "localhost", 104)).host in ("127.0.0.1", "::1")
    assert check(RemoteNode("PACS", "192.0.2.1", 11112), allow=["192.0.2.1"]).port == 11112
