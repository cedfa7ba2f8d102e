"""DICOM helpers shared by every door: transfer syntaxes, Part 10 files, the JSON model."""
