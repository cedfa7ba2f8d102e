"""One side of a relayed association: a DICOM socket on one end, NATS on the other.

Both relay routers run the same pump (docs/relay.md, "Association relay"): every DIMSE
message read from the local DICOM peer goes, sealed, to the other router; every message
from the other router is written to the local peer.  A `Session` reads its socket in
the thread that calls `run()` and writes it from a thread of its own, so a C-FIND's
pending responses, a C-CANCEL and a C-GET's C-STORE sub-operations flow both ways at
once.  What differs between the calling and the far side - what a release or an end
means, which requests may leave the site - is the subclass's (caller.py, agent.py).

Both routers send a `ping` every `interval` seconds and end the association with
A-ABORT when nothing came from the other one for `timeout` seconds (the other router,
or NATS, is gone), so no wait outlasts a bound.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from isthmus.dicom.ul import pdu, transport
from isthmus.dicom.ul.errors import PDUError
from isthmus.dimse import messages as msg
from isthmus.relay import wire
from isthmus.relay.crypto import EnvelopeError, SiteIdentity, SiteKeys
from isthmus.relay.link import Link, LinkDown
from isthmus.relay.pipe import Ended, Pipe
from isthmus.relay.wire import Message

log = logging.getLogger(__name__)

KeysOf = Callable[[str], SiteKeys | None]


class Session:
    """One relayed association, on one side; `run()` serves it until it ends."""

    def __init__(
        self,
        *,
        link: Link,
        identity: SiteIdentity,
        keys_of: KeysOf,
        peer_site: str,
        inbound: str,
        timeout: float,
        idle: float,
        label: str,
    ) -> None:
        self.link = link
        self.identity = identity
        self.keys_of = keys_of
        self.peer_site = peer_site
        self.inbound = inbound  # the subject the other router sends to us on
        self.outbound = ""  # the subject we send to it on (known once the aid is)
        self.aid = ""
        self.timeout = timeout
        self.idle = idle  # seconds without a DIMSE message either way before A-ABORT
        self.label = label  # for logs: "A->PACSB (WS)", no patient data
        self.pipe: Pipe | None = None
        self.on_end: Callable[[Session], None] | None = None
        self.done = threading.Event()
        self._seq = 0
        self._send_lock = threading.Lock()
        self._reassembler = wire.Reassembler()
        self._queue: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self._subscription: Any = None
        self._end_lock = threading.Lock()
        self.last_heard = self.last_sent = self.last_traffic = time.monotonic()

    # -- NATS ---------------------------------------------------------------
    def subscribe(self) -> None:
        """Listen on the inbound subject (before the other side may send on it)."""
        self._subscription = self.link.call(
            self.link.nc.subscribe(self.inbound, cb=self._on_envelope), timeout=self.timeout
        )

    async def _on_envelope(self, nats_msg: Any) -> None:
        """An envelope from the other router: checked, opened, joined, queued (the loop
        never blocks on a socket)."""
        try:
            opened = self.identity.open(nats_msg.data, self.keys_of)
            header = opened.header
            if header.get("from") != self.peer_site or header.get("kind") not in wire.KINDS:
                raise EnvelopeError(f"unexpected envelope {header.get('kind')!r}")
            whole = self._reassembler.add(header, opened.body)
        except EnvelopeError as exc:
            log.warning("relay %s: envelope dropped: %s", self.label, exc)
            return
        except wire.WireError as exc:
            log.warning("relay %s: %s; A-ABORT", self.label, exc)
            self._queue.put((wire.ABORT, b""))
            return
        self.last_heard = time.monotonic()
        if whole is not None:
            self._queue.put((str(header["kind"]), whole))

    def send(self, kind: str, body: bytes = b"") -> None:
        """Seal `body` to the other router and publish it (in parts when large)."""
        keys = self.keys_of(self.peer_site)
        if keys is None:
            raise LinkDown(f"site {self.peer_site!r} is unknown or revoked now")
        with self._send_lock:
            seq, self._seq = self._seq, self._seq + 1
            for part, parts, piece in wire.split(body):
                header = {"kind": kind, "aid": self.aid, "seq": seq, "part": part, "parts": parts}
                sealed = self.identity.seal(self.peer_site, keys, header, bytes(piece))
                self.link.call(self.link.nc.publish(self.outbound, sealed), timeout=self.timeout)
            self.last_sent = time.monotonic()

    def _send_quietly(self, kind: str) -> None:
        try:
            self.send(kind)
        except Exception as exc:  # ending anyway: NATS or the site may be gone
            log.info("relay %s: could not send %s: %s", self.label, kind, exc)

    def tick(self, interval: float) -> None:
        """Heartbeat: a ping when we said nothing for `interval`; the end when the other
        router said nothing for `timeout` (called by the router's heartbeat thread)."""
        if self.done.is_set() or not self.outbound:
            return
        now = time.monotonic()
        if now - self.last_heard > self.timeout:
            log.warning(
                "relay %s: nothing from site %s for %g s: A-ABORT",
                self.label,
                self.peer_site,
                self.timeout,
            )
            self._queue.put((wire.ABORT, b""))
        elif now - self.last_sent >= interval:
            self._send_quietly(wire.PING)

    # -- the pump -------------------------------------------------------------
    def run(self, pipe: Pipe) -> None:
        """Relay until the association ends (in this thread: the socket's reader)."""
        self.pipe = pipe
        self.last_heard = time.monotonic()
        writer = threading.Thread(target=self._write_loop, name=f"relay-{self.aid}", daemon=True)
        writer.start()
        try:
            self._read_loop(pipe)
        finally:
            writer.join(timeout=self.timeout)
            self.finish()

    def _read_loop(self, pipe: Pipe) -> None:
        while not self.done.is_set():
            try:
                item = pipe.read()
            except PDUError as exc:
                log.warning("relay %s: A-ABORT to the local peer: %s", self.label, exc)
                pipe.abort(pdu.ABORT_SOURCE_PROVIDER, exc.reason)
                self.end(wire.ABORT)
                return
            except TimeoutError as exc:
                if not isinstance(exc, transport.PDUTimeout) and not self._idle():
                    continue  # the local peer waits for an answer: that is not idleness
                if not self.done.is_set():
                    log.warning(
                        "relay %s: local peer idle or too slow (%s): A-ABORT", self.label, exc
                    )
                    pipe.abort()
                    self.end(wire.ABORT)
                return
            except OSError as exc:
                if not self.done.is_set():
                    log.warning("relay %s: local peer idle or gone (%s): A-ABORT", self.label, exc)
                    pipe.abort()
                    self.end(wire.ABORT)
                return
            if self.done.is_set():  # closed under the read by the other thread
                return
            if isinstance(item, Ended):
                self.local_ended(item)
                if item.how != "release-rq":
                    return
                continue
            try:
                self.from_local(item)
            except Exception as exc:  # NATS down, the other site revoked: tell the peer
                log.warning("relay %s: cannot relay (%s): A-ABORT", self.label, exc)
                pipe.abort()
                self.end(wire.ABORT)
                return

    def _idle(self) -> bool:
        """No DIMSE message either way for `idle` seconds (PS3.8 leaves the bound to the
        implementation; a caller waiting for a long C-MOVE's responses is not idle)."""
        return time.monotonic() - self.last_traffic >= self.idle

    def _write_loop(self) -> None:
        while not self.done.is_set():
            try:
                kind, body = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            try:
                self.from_remote(kind, body)
            except Exception as exc:  # the socket, a bad body, a bug: this association only
                log.warning("relay %s: cannot write to the local peer: %s", self.label, exc)
                assert self.pipe is not None
                self.pipe.abort()
                self.end(wire.ABORT)

    def from_local(self, message: Message) -> None:
        """A message from the local peer: to the other router."""
        self.last_traffic = time.monotonic()
        if log.isEnabledFor(logging.DEBUG):
            log.debug("relay %s: to site %s: %s", self.label, self.peer_site, _describe(message))
        self.send(wire.DIMSE, message.encode())

    def from_remote(self, kind: str, body: bytes) -> None:
        """What the other router sent: a message to write, or the end."""
        pipe = self.pipe
        assert pipe is not None
        if kind == wire.DIMSE:
            self.last_traffic = time.monotonic()
            message = Message.decode(body)
            if log.isEnabledFor(logging.DEBUG):
                log.debug("relay %s: to the local peer: %s", self.label, _describe(message))
            pipe.write(message)
        elif kind == wire.ABORT:
            log.info("relay %s: aborted by site %s", self.label, self.peer_site)
            pipe.abort()
            self.end(None)
        elif kind != wire.PING:
            self.remote_signal(kind)

    def local_ended(self, ended: Ended) -> None:
        """The local peer released or left; by default the other side is aborted."""
        assert self.pipe is not None
        log.info(
            "relay %s: local peer ended (%s): A-ABORT to site %s",
            self.label,
            ended.how,
            self.peer_site,
        )
        self.pipe.close()
        self.end(wire.ABORT)

    def remote_signal(self, kind: str) -> None:
        """`release`/`released` from the other router (the sides differ)."""
        log.warning(
            "relay %s: unexpected %s from site %s: A-ABORT", self.label, kind, self.peer_site
        )
        assert self.pipe is not None
        self.pipe.abort()
        self.end(wire.ABORT)

    def abort(self, tell: bool = True) -> None:
        """A-ABORT to the local peer and end here (telling the other router if `tell`)."""
        if self.pipe is not None:
            self.pipe.abort()
        self.end(wire.ABORT if tell else None)

    def end(self, tell: str | None) -> None:
        """End the association here; `tell` the other router (`abort`...) unless None."""
        if self.done.is_set():
            return
        if tell is not None:
            self._send_quietly(tell)
        self.finish()

    def finish(self) -> None:
        """Stop listening and close the socket; idempotent."""
        with self._end_lock:
            first = not self.done.is_set()
            self.done.set()
        if self.pipe is not None:
            self.pipe.close()
        if first:
            self._unsubscribe()
            if self.on_end is not None:
                self.on_end(self)

    def _unsubscribe(self) -> None:
        subscription, self._subscription = self._subscription, None
        if subscription is not None:
            try:
                self.link.call(subscription.unsubscribe(), timeout=5)
            except Exception:  # NATS gone: the subscription went with it
                log.debug("relay %s: unsubscribe failed", self.label, exc_info=True)


def _describe(message: Message) -> str:
    """Command field, message ids and status of a message, for debug logs (no patient data)."""
    try:
        command = msg.decode_command(message.command)
    except msg.MalformedCommand:
        return "malformed command set"
    return (
        f"0x{msg.us(command, msg.COMMAND_FIELD):04X} id {msg.us(command, msg.MESSAGE_ID)}"
        f"/{msg.us(command, msg.MESSAGE_ID_RESPONDED)} status 0x{msg.us(command, msg.STATUS):04X}"
        f" on [{message.context_id}]"
    )
