#!/usr/bin/env bash
# Install the system packages the tests and benchmarks need, only when missing:
# DCMTK (real DICOM peers), PostgreSQL server, Chromium (browser tests), Node.js (JS tests),
# HAProxy (the load balancer in front of several processes, tests/scaling), coturn (TURN, tests/p2p),
# Orthanc with its DICOMweb plugin (a PACS as a peer, tests/dimse and tests/web; the benchmarks),
# GDCM's gdcmscu (a DICOM SCU as a peer, tests/dimse/test_gdcm_peer.py).
# Usage: scripts/system-deps.sh [test|bench]
set -euo pipefail
want=()
command -v storescu >/dev/null 2>&1 || want+=(dcmtk)
if ! command -v pg_ctl >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then
  want+=(postgresql)
fi
[ -x /usr/bin/chromium ] || want+=(chromium)
command -v node >/dev/null 2>&1 || want+=(nodejs)
command -v npm >/dev/null 2>&1 || want+=(npm)
command -v unshare >/dev/null 2>&1 || want+=(util-linux)
command -v ip >/dev/null 2>&1 || want+=(iproute2)
[ -x /usr/sbin/haproxy ] || want+=(haproxy)  # the load balancer of the scaling tests
command -v turnserver >/dev/null 2>&1 || want+=(coturn)  # TURN server of the p2p tests
# Orthanc, a PACS as a peer: the interop tests (tests/dimse/test_orthanc_peer.py,
# tests/web/test_orthanc_dicomweb.py) and the benchmarks' other archive.
[ -x /usr/sbin/Orthanc ] || want+=(orthanc)
[ -e /usr/share/orthanc/plugins/libOrthancDicomWeb.so ] || want+=(orthanc-dicomweb)
command -v gdcmscu >/dev/null 2>&1 || want+=(libgdcm-tools)  # GDCM's SCU (tests/dimse/test_gdcm_peer.py)
if [ "${1:-test}" = bench ]; then
  [ -e /usr/share/orthanc/plugins/libOrthancPostgreSQLIndex.so ] || want+=(orthanc-postgresql)
  command -v curl >/dev/null 2>&1 || want+=(curl)  # HTTP client of the DICOMweb benchmarks
fi
if [ ${#want[@]} -eq 0 ]; then exit 0; fi
echo "installing system packages: ${want[*]}"
SUDO=""
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "need root (or sudo) to install: ${want[*]}" >&2; exit 1; fi
fi
export DEBIAN_FRONTEND=noninteractive
# Do not start services the packages ship (Orthanc, PostgreSQL): tests start their own.
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
  $SUDO chmod +x /usr/sbin/policy-rc.d
  trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
fi
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${want[@]}" >/dev/null
