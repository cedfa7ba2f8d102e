"""Run the whole benchmark inside a private network namespace with only loopback.

DCMTK's storescp and Orthanc cannot be told which address to bind (docs/performance.md,
"Method"), so every participant of a scenario - SCU, SCP, Isthmus, Orthanc - runs inside
one namespace made by `unshare -n` (root) or `unshare -rn` (unprivileged, where user
namespaces are allowed), whose loopback is brought up first.  Nothing the
benchmark starts can be reached from, or reach, any other network.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Sequence

MARKER = "ISTHMUS_BENCH_NETNS"


def inside() -> bool:
    return os.environ.get(MARKER) == "1"


def reexec(argv: Sequence[str], timeout: float, module: str = "bench") -> int:
    """Run `python -m MODULE ARGV` in a new namespace; return its exit status."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        print("bench: needs `unshare` (util-linux) and `ip` (iproute2)", file=sys.stderr)
        return 2
    flags = "-n" if os.geteuid() == 0 else "-rn"
    cmd = [
        "unshare",
        flags,
        "sh",
        "-c",
        'ip link set lo up && exec "$@"',
        "sh",
        sys.executable,
        "-m",
        module,
        *argv,
    ]
    env = dict(os.environ, **{MARKER: "1"})
    proc = subprocess.Popen(cmd, env=env)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        print(f"bench: still running after {timeout:.0f} s, stopping it", file=sys.stderr)
        proc.send_signal(signal.SIGTERM)  # the inner run stops its servers on SIGTERM
        try:
            return proc.wait(timeout=60) or 1
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait()
    except KeyboardInterrupt:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        return 130
