"""The relay door: a relay router at every site and the relay bridge in the middle (seed 002).

See docs/relay.md for the design, the protocol on the wire and the threat model.
"""
