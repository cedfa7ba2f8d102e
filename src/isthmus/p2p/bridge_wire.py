"""The names on the wire of p2p through the bridge (docs/p2p.md, "Signalling through the
bridge", "Relay fallback"): the request kinds, the subject a sharing site answers on, and
the refusal both sides raise.  Apart from p2p/bridge_signal.py so that the fetching side
(p2p/fetch.py, p2p/fallback.py) names them without importing the responder."""

from __future__ import annotations

OFFER, ANSWER, RELAY = "p2p-offer", "p2p-answer", "p2p-relay"
TIMEOUT = 30.0  # seconds a request through the bridge may take


def p2p_subject(site: str) -> str:
    return f"relay.{site}.p2p"


class SignallingRefused(Exception):
    """The sharing site refused (its status and message), or could not be asked."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
