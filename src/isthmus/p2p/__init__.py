"""Peer-to-peer study sharing over WebRTC data channels (docs/p2p.md).

`channel` hides the WebRTC library (aiolibdatachannel) behind `Peer` and `Channel`;
`protocol` is the transfer protocol's framing; `sender` serves a study from the archive,
`receiver` pulls one into it; `signalling` binds the share link's secret to the DTLS
fingerprints; `web` is the node's HTTP door for shares and signalling; `console` the CLI.
Over a federation: `federation` (presence, sealed listings), `bridge_signal` (offers and
fallback requests through NATS), `fallback` (the relay transfer when no WebRTC path opens).
"""
