"""What the whole node shares, below every door: one DICOM port and who may use it.

`router.py` is the DICOM port, routed by called AE title (docs/architecture.md, "One DICOM
port"): the DIMSE door serves the archive's own AE title, the WebSocket gateway
registers browser AEs, the relay will register remote sites.  `access.py` is the
list of known peers, which is also the access-control list and the set of C-MOVE
destinations.  `sockets.py` holds the socket options every DICOM connection gets.
Nothing here imports a door: doors import this package and hand it their handlers.
"""
