"""Metrics in the Prometheus text format: the archive's events counted (prometheus-client).

`Metrics` subscribes to the archive's event bus (``metrics.*`` and ``audit.*`` events,
archive/activity.py) and keeps its own registry, so several nodes in one process (the
tests) count apart.  Gauges that are states, not events (the group-commit writer's
queue, open associations), are read when scraped.  docs/operations.md lists the names.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from isthmus.archive import Archive, Event

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4  # the text format every Prometheus reads
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
ASSOCIATION_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600)


class Metrics:
    """The counters, gauges and histograms of one node."""

    def __init__(
        self, archive: Archive, open_associations: Callable[[], int] | None = None
    ) -> None:
        self.registry = registry = CollectorRegistry()
        self.instances = Counter(
            "isthmus_instances",
            "DICOM instances received or sent, per door",
            ["door", "direction"],
            registry=registry,
        )
        self.bytes = Counter(
            "isthmus_instance_bytes",
            "Bytes of DICOM instances received or sent, per door",
            ["door", "direction"],
            registry=registry,
        )
        self.requests = Histogram(
            "isthmus_http_request_duration_seconds",
            "HTTP request latency, by route kind, method and status class",
            ["route", "method", "status"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.associations = Histogram(
            "isthmus_association_duration_seconds",
            "DIMSE association duration, from A-ASSOCIATE-RQ to its end",
            ["door"],
            buckets=ASSOCIATION_BUCKETS,
            registry=registry,
        )
        self.association_results = Counter(
            "isthmus_associations",
            "A-ASSOCIATE-RQ answered, by result (accepted, rejected)",
            ["result"],
            registry=registry,
        )
        self.errors = Counter(
            "isthmus_store_errors",
            "Index and blob store errors",
            ["store"],
            registry=registry,
        )
        self.audit_events = Counter(
            "isthmus_audit_events",
            "Audit events published, by event and outcome",
            ["event", "outcome"],
            registry=registry,
        )
        self.relay = Counter(
            "isthmus_relay_transfers",
            "Studies moved through the relay, by direction",
            ["direction"],
            registry=registry,
        )
        self.p2p = Counter(
            "isthmus_p2p_transfers",
            "Transfers between WebRTC peers, by direction",
            ["direction"],
            registry=registry,
        )
        queue = Gauge(
            "isthmus_index_writer_queue_depth",
            "Index write jobs waiting for the group-commit writer",
            registry=registry,
        )
        queue.set_function(archive.writer.depth)
        if open_associations is not None:
            opened = Gauge(
                "isthmus_open_associations",
                "DIMSE associations being served now",
                registry=registry,
            )
            opened.set_function(open_associations)
        for store in ("index", "blob"):  # present from the start, at zero
            self.errors.labels(store)
        self._children: dict[tuple[str, str], tuple[Any, Any]] = {}
        self._request_children: dict[tuple[str, str, str], Any] = {}
        self._handlers: dict[str, Callable[[Mapping[str, Any]], None]] = {
            "metrics.instance": self._instance,
            "metrics.request": self._request,
            "metrics.association": self._association,
            "metrics.error": lambda p: self.errors.labels(str(p.get("store", ""))).inc(),
            "metrics.p2p": lambda p: self.p2p.labels(str(p.get("direction", ""))).inc(),
        }
        self._unsubscribe = [
            archive.events.subscribe("metrics.", self._on_event),
            archive.events.subscribe("audit.", self._on_audit),
        ]

    def render(self) -> bytes:
        """The registry in the Prometheus text exposition format (version 0.0.4)."""
        return generate_latest(self.registry)

    def close(self) -> None:
        for unsubscribe in self._unsubscribe:
            unsubscribe()

    def _on_event(self, event: Event) -> None:
        handler = self._handlers.get(event.topic)
        if handler is not None:
            handler(event.payload)

    def _instance(self, payload: Mapping[str, Any]) -> None:
        """Per instance (the ingest path): the labelled children are looked up once."""
        labels = (str(payload.get("door", "")), str(payload.get("direction", "")))
        children = self._children.get(labels)
        if children is None:
            children = self._children[labels] = (
                self.instances.labels(*labels),
                self.bytes.labels(*labels),
            )
        children[0].inc()
        children[1].inc(int(payload.get("bytes", 0)))

    def _request(self, payload: Mapping[str, Any]) -> None:
        """Per HTTP request: the labelled child is looked up once per label set."""
        status = f"{int(payload.get('status', 0)) // 100}xx"
        labels = (str(payload["route"]), str(payload["method"]), status)
        child = self._request_children.get(labels)
        if child is None:
            child = self._request_children[labels] = self.requests.labels(*labels)
        child.observe(float(payload["seconds"]))

    def _association(self, payload: Mapping[str, Any]) -> None:
        self.associations.labels(str(payload.get("door", ""))).observe(float(payload["seconds"]))

    def _on_audit(self, event: Event) -> None:
        kind = event.topic.removeprefix("audit.")
        outcome = int(event.payload.get("outcome", 0))
        self.audit_events.labels(kind, str(outcome)).inc()
        if kind == "association":
            self.association_results.labels("accepted" if outcome == 0 else "rejected").inc()
        elif kind == "relay-transfer":
            direction = (event.payload.get("detail") or {}).get("direction", "")
            self.relay.labels(str(direction)).inc()


def by_worker(texts: Mapping[str, str]) -> bytes:
    """The metrics of several worker processes (workers.py) as one exposition, each
    sample labelled with its worker (``worker="w0"``), the way Prometheus labels the
    instances of a job: sum them by that label for the node's totals.  Each text is in
    the format `render` writes: a family is its ``# HELP`` and ``# TYPE`` lines followed
    by its samples, and the same family of every worker becomes one."""
    families: dict[str, tuple[list[str], list[str]]] = {}  # name → (header, samples)
    for worker, text in texts.items():
        family: tuple[list[str], list[str]] = ([], [])
        for line in text.splitlines():
            if line.startswith(("# HELP ", "# TYPE ")):
                family = families.setdefault(line.split()[2], ([], []))
                if line not in family[0]:
                    family[0].append(line)
            elif line.strip() and not line.startswith("#"):
                family[1].append(_labelled(line, worker))
    lines = [line for header, samples in families.values() for line in (*header, *samples)]
    return ("\n".join(lines) + "\n").encode("utf-8")


def _labelled(sample: str, worker: str) -> str:
    """``name{a="b"} 1`` → ``name{worker="w0",a="b"} 1`` (names never hold "{" or " ")."""
    label = f'worker="{worker}"'
    name_end = min((i for i in (sample.find("{"), sample.find(" ")) if i >= 0), default=-1)
    if name_end < 0:
        return sample
    name, rest = sample[:name_end], sample[name_end:]
    if rest.startswith("{}"):
        return f"{name}{{{label}}}{rest[2:]}"
    if rest.startswith("{"):
        return f"{name}{{{label},{rest[1:]}"
    return f"{name}{{{label}}}{rest}"
