"""Isthmus: a web-native PACS and DICOM gateway."""

from isthmus.dicom import charset as _charset

_charset.repair()  # before any data set is read or written (isthmus.dicom.charset)

__version__ = "0.1.0"

# Isthmus's UID root is 1.2.826.0.1.3680043.10.1386, a root under Medical Connections'
# 1.2.826.0.1.3680043 (arc .10 holds the roots they issue); it is not pydicom's root
# (1.2.826.0.1.3680043.8.498).  .1 is this implementation, .2 the browser library
# (viewer/dicomnet/uids.js), .4 the UIDs a node makes for what it schedules (the Study
# Instance UID of a requested procedure, archive/workitem_entry.py), .9 the test data
# (testing/generate.py).
UID_ROOT = "1.2.826.0.1.3680043.10.1386"
IMPLEMENTATION_CLASS_UID = "1.2.826.0.1.3680043.10.1386.1"
IMPLEMENTATION_VERSION_NAME = "ISTHMUS_010"
