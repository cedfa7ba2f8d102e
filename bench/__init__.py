"""Reproducible benchmarks of Isthmus against DCMTK and Orthanc, same data, same run.

`make bench` (or `python -m bench`) generates the data, runs every scenario inside a
private network namespace (loopback only, because DCMTK's `storescp` and Orthanc
cannot be told which address to bind) and writes `bench/out/results.json` and
`bench/out/results.md`.  Method and figures: docs/performance.md.

Scenarios, one module each exposing `NAME`, `TITLE` and `run(lab)`: store, ingest,
find, move (issue 2, DIMSE); metadata, wado, stow, qido, render (issue 3, DICOMweb).
Shared parts: data (generated data sets), lab (servers and loaded archives), systems
(Isthmus and Orthanc as subprocesses), procs (timed commands), dimse and http (the
DCMTK and curl clients), profile (py-spy), results (table and files), netns.
Separate tools on the same parts, not run by `make bench`: `python -m bench.viewer`
(the viewer in Chromium), `python -m bench.web_profile` (Isthmus's DICOMweb paths
alone) and `python -m bench.dicom_ws` (the browser DICOM node).
"""
