"""GDCM's ``gdcmscu`` (Debian's libgdcm-tools) as a real DICOM SCU, for tests.

Its C-MOVE storage SCP (``--port-scp``) cannot be told which address to bind: GDCM
listens on every interface.  As root, `run` therefore runs a C-MOVE's gdcmscu in a
private network namespace with only loopback (``unshare -n``, as `dcmtk.StoreSCP` does; testing/netns.py):
there 127.0.0.1:`PEER_INSIDE` leads to the peer's port on this namespace's loopback, and
the SCP's port on this namespace's loopback leads to `SCP_INSIDE` there.  Without root it
runs gdcmscu directly.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence

from isthmus.testing.netns import Forwarder, Outbound, can_isolate, namespace_of

PEER_INSIDE, SCP_INSIDE = 11112, 11113  # ports inside the namespace


def tool() -> str | None:
    """Path of gdcmscu, None when it is not installed."""
    return shutil.which("gdcmscu")


def run(
    args: Sequence[str], port: int, scp_port: int | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """``gdcmscu ARGS 127.0.0.1 PORT`` (plus ``--port-scp`` when `scp_port` is given: where
    the peer reaches its C-MOVE SCP on 127.0.0.1); its exit status and output."""
    gdcmscu = tool()
    if gdcmscu is None:
        raise FileNotFoundError("gdcmscu is not installed (scripts/system-deps.sh)")
    if scp_port is None or not can_isolate():
        scp = ["--port-scp", str(scp_port)] if scp_port is not None else []
        command = [gdcmscu, *args, *scp, "127.0.0.1", str(port)]
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    script = 'ip link set lo up && read go && exec "$@"'
    inner = [gdcmscu, *args, "--port-scp", str(SCP_INSIDE), "127.0.0.1", str(PEER_INSIDE)]
    command = ["unshare", "--net", "sh", "-c", script, "gdcmscu", *inner]
    proc = subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    forwarders: list[Outbound | Forwarder] = []
    try:
        netns = namespace_of(proc.pid, timeout)
        forwarders.append(Outbound(netns, PEER_INSIDE, port, timeout))
        forwarders.append(Forwarder(netns, SCP_INSIDE, scp_port))
        out, err = proc.communicate("go\n", timeout=timeout)
    except BaseException:
        proc.kill()
        proc.communicate()
        raise
    finally:
        for forwarder in forwarders:
            forwarder.close()
    return subprocess.CompletedProcess(command, proc.returncode, out, err)
