"""Isthmus: a web-native PACS and DICOM gateway."""

__version__ = "0.1.0"

IMPLEMENTATION_CLASS_UID = "1.2.826.0.1.3680043.10.1386.1"  # pydicom's org root + Isthmus suffix
IMPLEMENTATION_VERSION_NAME = "ISTHMUS_010"
