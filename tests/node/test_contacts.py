"""Contacts: associations in progress and last contact per AE title, from the event bus."""

from __future__ import annotations

from isthmus.archive.events import LocalEventBus
from isthmus.node import contacts
from isthmus.node.contacts import Contacts


def opened(bus: LocalEventBus, key: str, direction: str, calling: str, called: str) -> dict:
    payload = {
        "id": key,
        "direction": direction,
        "calling_aet": calling,
        "called_aet": called,
        "address": "127.0.0.1",
    }
    bus.publish("association.opened", payload)
    return payload


def test_open_associations_and_the_peer_of_each_direction_are_tracked() -> None:
    bus = LocalEventBus()
    seen = Contacts(bus)
    inbound = opened(bus, "a", "inbound", "CT01", "ISTHMUS")
    opened(bus, "b", "outbound", "ISTHMUS", "PACS2")
    assert [a["id"] for a in seen.associations()] == ["a", "b"]
    bus.publish("association.closed", inbound)
    assert [a["id"] for a in seen.associations()] == ["b"]
    assert seen.last_contact("CT01")["direction"] == "inbound"  # type: ignore[index]
    assert seen.last_contact("PACS2")["direction"] == "outbound"  # type: ignore[index]
    assert seen.last_contact("ISTHMUS") is None
    seen.close()
    opened(bus, "c", "inbound", "LATE", "ISTHMUS")
    assert seen.last_contact("LATE") is None


def test_contacts_are_bounded_forgetting_the_least_recent(monkeypatch) -> None:
    monkeypatch.setattr(contacts, "MAX_CONTACTS", 3)
    bus = LocalEventBus()
    seen = Contacts(bus)
    for n, aet in enumerate(["A", "B", "C", "A", "D"]):
        opened(bus, str(n), "inbound", aet, "ISTHMUS")
    assert sorted(seen.contacts()) == ["A", "C", "D"]
