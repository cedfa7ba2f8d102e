"""The in-process event bus: prefix subscription, unsubscribe, a failing subscriber."""

from __future__ import annotations

from isthmus.archive.events import Event, LocalEventBus


def test_subscribers_receive_events_whose_topic_starts_with_their_prefix() -> None:
    bus = LocalEventBus()
    ups: list[Event] = []
    everything: list[Event] = []
    bus.subscribe("ups.", ups.append)
    bus.subscribe("", everything.append)
    bus.publish("ups.1.2.3", {"state": "IN PROGRESS"})
    bus.publish("route.browser", {"aet": "B1"})
    assert [e.topic for e in ups] == ["ups.1.2.3"]
    assert ups[0].payload == {"state": "IN PROGRESS"}
    assert [e.topic for e in everything] == ["ups.1.2.3", "route.browser"]


def test_unsubscribed_callback_receives_nothing_more() -> None:
    bus = LocalEventBus()
    got: list[Event] = []
    unsubscribe = bus.subscribe("", got.append)
    bus.publish("a")
    unsubscribe()
    bus.publish("b")
    assert [e.topic for e in got] == ["a"]


def test_failing_subscriber_does_not_stop_delivery_to_others() -> None:
    bus = LocalEventBus()
    got: list[Event] = []

    def broken(event: Event) -> None:
        raise RuntimeError("subscriber bug")

    bus.subscribe("", broken)
    bus.subscribe("", got.append)
    bus.publish("x")
    assert [e.topic for e in got] == ["x"]
