"""The DIMSE door: DIMSE services over the DICOM upper layer on TCP (PS3.7, PS3.8).

As SCP it has its own upper layer (acceptor.py, for speed: docs/architecture.md),
serving the service table that scp.py builds; as SCU the command line uses
pynetdicom (scu.py), except for C-STORE, sent by the lean requestor (requestor.py).
The DICOM port and access control are the node's (isthmus.node), shared with the
other doors.
"""
