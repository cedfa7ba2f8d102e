"""The DICOM upper layer (PS3.8): PDUs, their items, validation, P-DATA and transport.

One implementation shared by the DIMSE acceptor and requestor and the WebSocket
gateway, kept apart the way PS3.8 is:

- `pdu`: the seven PDUs with encode/decode (PS3.8 9.3);
- `items`: the variable items and user information sub-items (PS3.8 9.3.2-9.3.3,
  PS3.7 D.3.3);
- `validation`: one validator, one strictness policy, for every door;
- `pdata`: PDVs - fragmentation and reassembly of DIMSE messages (PS3.8 9.3.5, E.2);
- `transport`: reading and writing PDUs on TCP, blocking and asyncio (PS3.8 9.1).
"""
