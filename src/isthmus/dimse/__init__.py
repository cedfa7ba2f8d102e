"""The DIMSE door: DICOM upper layer over TCP (PS3.7, PS3.8), via pynetdicom."""
