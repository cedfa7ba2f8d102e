"""One WebRTC peer connection with one reliable, ordered data channel.

The only module that imports the WebRTC library (aiolibdatachannel, libdatachannel's
bindings: DTLS 1.2 + SCTP over ICE, RFC 8831/8832).  SDPs go whole, with every
candidate gathered (no trickle), which suits one HTTP request of signalling.  Other
paths (TURN servers, a relay-only policy) are `ice_servers`/`relay_only` here and
nothing else changes.  `send` applies back-pressure on the channel's bufferedAmount.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence

LABEL = "isthmus-p2p"
HIGH_WATER = 4 * 1024 * 1024  # send() waits while more than this is buffered…
LOW_WATER = 1024 * 1024  # …until it falls below this
MAX_MESSAGE = 256 * 1024  # libdatachannel's and browsers' default max-message-size

_FINGERPRINT = re.compile(r"^a=fingerprint:sha-256 ([0-9A-Fa-f:]+)\s*$", re.MULTILINE)
_HOST = re.compile(
    r"^a=candidate:\S+ 1 UDP \d+ (\d+\.\d+\.\d+\.\d+) (\d+) typ host\s*$", re.MULTILINE
)


class P2PUnavailable(RuntimeError):
    """This Python has no aiolibdatachannel (its wheels need CPython 3.12+)."""


class ChannelClosed(Exception):
    """The data channel closed (or never opened) before the exchange ended."""


def fingerprint(sdp: str) -> str:
    """The SHA-256 DTLS certificate fingerprint an SDP announces (RFC 8122), upper case."""
    found = _FINGERPRINT.search(sdp)
    if found is None:
        raise ValueError("the SDP has no a=fingerprint:sha-256 line")
    return found.group(1).upper()


def with_loopback(sdp: str) -> str:
    """Add a 127.0.0.1 host candidate on each IPv4 host candidate's port.

    libjuice gathers no loopback candidates but its sockets listen on every address, so
    two nodes on one machine without another interface still find each other."""
    if "127.0.0.1" in "".join(m.group(1) for m in _HOST.finditer(sdp)):
        return sdp
    extra = [
        f"a=candidate:9{n} 1 UDP 1 127.0.0.1 {m.group(2)} typ host"
        for n, m in enumerate(_HOST.finditer(sdp))
    ]
    if not extra:
        return sdp
    marker = "a=end-of-candidates"
    lines = "\r\n".join(extra)
    if marker in sdp:
        return sdp.replace(marker, lines + "\r\n" + marker, 1)
    return sdp.rstrip("\r\n") + "\r\n" + lines + "\r\n"


def without_candidates(sdp: str) -> str:
    """The SDP without its candidate lines."""
    lines = sdp.splitlines()
    return "\r\n".join(x for x in lines if not x.startswith("a=candidate:")) + "\r\n"


class Channel:
    """The data channel: binary messages of at most MAX_MESSAGE bytes, text for control."""

    def __init__(self, native: object) -> None:
        self._dc = native

    async def send(self, data: bytes | str) -> None:
        """Queue one message; waits (bounded by `timeout` of the caller) while the send
        buffer is above HIGH_WATER, so a fast sender never outruns the path."""
        dc = self._dc
        try:
            if dc.buffered_amount > HIGH_WATER:  # type: ignore[attr-defined]
                while dc.buffered_amount > LOW_WATER:  # type: ignore[attr-defined]
                    if dc.is_closed:  # type: ignore[attr-defined]
                        raise ChannelClosed("the data channel closed")
                    await asyncio.sleep(0.002)
            await dc.send(data, wait_for_drain=False)  # type: ignore[attr-defined]
        except ChannelClosed:
            raise
        except Exception as exc:
            raise ChannelClosed(str(exc)) from exc

    async def recv(self, timeout: float) -> bytes | str:
        """The next message; ChannelClosed when the channel closes, TimeoutError after
        `timeout` seconds of silence."""
        try:
            return await asyncio.wait_for(self._dc.recv(), timeout)  # type: ignore[attr-defined]
        except TimeoutError:
            raise
        except Exception as exc:
            raise ChannelClosed(str(exc) or "the data channel closed") from exc

    async def close(self) -> None:
        try:
            await self._dc.aclose()  # type: ignore[attr-defined]
        except Exception:  # already closed: nothing to release
            pass


class Peer:
    """One end of a connection.  The offerer: `offer()`, send it, `accept(answer)`,
    then `channel()`.  The answerer: `answer(offer)`, send it back, then `channel()`."""

    def __init__(
        self, ice_servers: Sequence[str] = (), relay_only: bool = False, loopback: bool = True
    ) -> None:
        try:
            from aiolibdatachannel import PeerConnection, RTCConfiguration, TransportPolicy
        except ImportError:
            raise P2PUnavailable(
                "peer-to-peer sharing needs aiolibdatachannel, which needs Python 3.12 or newer"
                " (rebuild the venv with scripts/venv.sh)"
            ) from None

        policy = TransportPolicy.RELAY if relay_only else TransportPolicy.ALL
        config = RTCConfiguration(
            ice_servers=list(ice_servers), ice_transport_policy=policy, max_message_size=MAX_MESSAGE
        )
        self._pc = PeerConnection(config)
        self._loopback = loopback and not relay_only
        self._relay_only = relay_only
        self._channel: Channel | None = None
        self.local_sdp = ""
        self.remote_sdp = ""

    def _remote(self, sdp: str) -> str:
        """Under a relay-only policy a path needs a relay candidate of ours; with none
        (no TURN server, or no allocation) libjuice would still reach the remote's
        candidates from its host sockets, so they are dropped: no path, as the policy
        says (the fetch then takes the relay fallback, p2p/fetch.py)."""
        if self._relay_only and " typ relay" not in self.local_sdp:
            return without_candidates(sdp)
        return sdp

    def _local(self, sdp: str) -> str:
        self.local_sdp = with_loopback(sdp) if self._loopback else sdp
        return self.local_sdp

    async def offer(self, timeout: float = 10) -> str:
        """Create the data channel and the offer SDP (every candidate gathered)."""
        dc = await self._pc.create_data_channel(LABEL)
        self._channel = Channel(dc)
        description = await asyncio.wait_for(self._pc.create_offer(), timeout)
        return self._local(description.sdp)

    async def answer(self, offer_sdp: str, timeout: float = 10) -> str:
        """Apply a remote offer; the answer SDP."""
        self.remote_sdp = offer_sdp
        await asyncio.wait_for(self._pc.set_remote_description(offer_sdp, "offer"), timeout)
        description = await asyncio.wait_for(self._pc.create_answer(), timeout)
        return self._local(description.sdp)

    async def accept(self, answer_sdp: str, timeout: float = 10) -> None:
        """Apply the remote answer (the offerer's side)."""
        self.remote_sdp = answer_sdp
        await asyncio.wait_for(
            self._pc.set_remote_description(self._remote(answer_sdp), "answer"), timeout
        )

    async def add_candidate(self, candidate: str, mid: str = "0") -> None:
        """A remote candidate that came later (trickle ICE)."""
        await self._pc.add_remote_candidate(candidate, mid)

    async def channel(self, timeout: float = 20) -> Channel:
        """The open data channel (ours, or the one the offerer created)."""
        try:
            if self._channel is None:
                dc = await asyncio.wait_for(self._pc.accept_data_channel(), timeout)
                self._channel = Channel(dc)
            await asyncio.wait_for(self._channel._dc.wait_open(), timeout)  # type: ignore[attr-defined]
        except TimeoutError:
            raise ChannelClosed(
                f"no WebRTC connection within {timeout:g} s (no ICE path?)"
            ) from None
        except ChannelClosed:
            raise
        except Exception as exc:
            raise ChannelClosed(f"the data channel did not open: {exc}") from exc
        return self._channel

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
        try:
            await asyncio.wait_for(self._pc.aclose(), 10)
        except Exception:  # closing is best effort: the process may be going down
            pass
