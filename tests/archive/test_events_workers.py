"""Events between the workers of one node on SQLite: through the supervisor's control
sockets (real SOCK_SEQPACKET pairs), each event to every other worker, in order."""

from __future__ import annotations

import queue
import socket
import threading
from collections.abc import Iterator

import pytest

from isthmus.archive import Event
from isthmus.archive.events_workers import (
    EVENT,
    MAX_EVENT,
    READY,
    EventRelay,
    WorkerEventBus,
)
from isthmus.workers import _watch


class Node:
    """Three workers' buses and a supervisor's relay between them."""

    def __init__(self, workers: int = 3) -> None:
        self.relay = EventRelay()
        self.buses: list[WorkerEventBus] = []
        self.stops: list[threading.Event] = []
        self.heard: list[queue.Queue[Event]] = []
        for number in range(workers):
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            self.relay.controls[number] = ours
            bus = WorkerEventBus(theirs, workers - 1)
            heard: queue.Queue[Event] = queue.Queue()
            bus.subscribe("", heard.put)
            stop = threading.Event()
            threading.Thread(target=_watch, args=(theirs, bus, stop), daemon=True).start()
            self.buses.append(bus)
            self.stops.append(stop)
            self.heard.append(heard)
        self._thread = threading.Thread(target=self._pass_on, daemon=True)
        self._thread.start()

    def _pass_on(self) -> None:
        import selectors

        with selectors.DefaultSelector() as selector:
            for number, control in self.relay.controls.items():
                selector.register(control, selectors.EVENT_READ, number)
            while self.relay.controls:
                for key, _ in selector.select(0.2):
                    try:
                        message = self.relay.controls[key.data].recv(MAX_EVENT + 1)
                    except (KeyError, OSError):
                        return
                    if message.startswith(EVENT):
                        self.relay.relay(key.data, message)

    def close(self) -> None:
        controls = list(self.relay.controls.values())
        self.relay.controls.clear()
        self._thread.join(5)
        for control in controls:
            control.close()


@pytest.fixture
def node() -> Iterator[Node]:
    running = Node()
    yield running
    running.close()


def test_an_event_reaches_every_other_worker_once_and_its_publisher_at_once(node: Node):
    node.buses[1].publish("ups.1.2.3", {"state": "SCHEDULED"})
    assert node.heard[1].get_nowait() == Event("ups.1.2.3", {"state": "SCHEDULED"})
    for other in (0, 2):
        assert node.heard[other].get(timeout=10) == Event("ups.1.2.3", {"state": "SCHEDULED"})
    node.buses[0].publish("route.browser", {"aet": "B"})  # a later event
    assert node.heard[2].get(timeout=10).topic == "route.browser"
    assert node.heard[1].get(timeout=10).topic == "route.browser"
    assert node.heard[1].empty()  # ups.1.2.3 was not sent back to its publisher


def test_events_of_one_worker_arrive_in_the_order_sent(node: Node):
    for n in range(200):
        node.buses[0].publish("job.done", {"id": n})
    assert [node.heard[2].get(timeout=10).payload["id"] for _ in range(200)] == list(range(200))


def test_a_local_event_stays_in_its_worker(node: Node):
    node.buses[0].publish("metrics.instance", {"bytes": 1}, local=True)
    node.buses[0].publish("job.done", {"id": 1})  # a marker that does cross
    assert node.heard[0].get_nowait().topic == "metrics.instance"
    assert node.heard[1].get(timeout=10).topic == "job.done"


def test_an_event_too_large_to_cross_is_refused_and_not_delivered(node: Node):
    with pytest.raises(ValueError, match="publish a reference"):
        node.buses[0].publish("ups.x", {"dataset": "x" * MAX_EVENT})
    assert node.heard[0].empty()


def test_the_other_workers_count_as_having_the_archive_open(node: Node):
    assert [bus.others() for bus in node.buses] == [2, 2, 2]


def test_a_worker_stops_when_its_supervisor_goes_away():
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    stop = threading.Event()
    watcher = threading.Thread(target=_watch, args=(theirs, None, stop), daemon=True)
    watcher.start()
    ours.send(READY)  # not an event: ignored
    ours.close()
    assert stop.wait(10)
    watcher.join(5)
    theirs.close()


def test_an_unreadable_message_is_dropped_and_the_next_one_delivered():
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    bus = WorkerEventBus(theirs, 1)
    heard: list[Event] = []
    bus.subscribe("", heard.append)
    bus.received(EVENT + b"{not json")
    bus.received(EVENT + b'{"topic": "job.done", "payload": {"id": 7}}')
    assert heard == [Event("job.done", {"id": 7})]
    ours.close()
    theirs.close()
