"""Site B's transfer receiver as a process of its own, for the test that kills it.

``python receiver_process.py CONFIG.json``: the config names NATS, the bucket, B's
identity file, A's and B's public keys, the index and an output folder.  Each
delivery writes the instance to the folder (fsync'd) and its UID as one line of
``delivered.log``; once `block_after` instances are delivered, the next delivery
writes ``blocked`` and waits forever - so a SIGKILL lands before any of its effects.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from pathlib import Path

from isthmus.archive import Archive
from isthmus.relay.crypto import SiteIdentity, SiteKeys
from isthmus.relay.directory import Directory, SiteEntry
from isthmus.relay.link import Link
from isthmus.relay.objects_s3 import S3Objects
from isthmus.relay.transfer import Announcement, Limits, TransferReceiver


def main(config_path: str) -> None:
    config = json.loads(Path(config_path).read_text())
    out = Path(config["out"])
    identity = SiteIdentity.load(Path(config["identity"]))
    directory = Directory(identity.name)
    for name, keys in config["sites"].items():
        directory.update(SiteEntry(name, SiteKeys.from_json(keys)))
    count = 0

    def deliver(announcement: Announcement, data: bytes) -> int:
        nonlocal count
        if count >= config["block_after"]:
            (out / "blocked").write_text(announcement.sop_instance_uid)
            threading.Event().wait()
        path = out / f"{announcement.sop_instance_uid}.dcm"
        with open(path, "wb") as f:
            f.write(data)
            os.fsync(f.fileno())
        with open(out / "delivered.log", "a") as log:
            log.write(announcement.sop_instance_uid + "\n")
            log.flush()
            os.fsync(log.fileno())
        count += 1
        return 0x0000

    archive = Archive(config["index_url"], f"file://{out / 'blobs'}")
    link = Link(config["nats_url"], name="site-B-process").connect()
    limits = Limits(ack_wait=config["ack_wait"], manifest_wait=60.0, poll=0.5)
    TransferReceiver(
        link,
        identity,
        directory,
        S3Objects(config["blob_url"]),
        state=archive.relay_transfers,
        deliver=deliver,
        limits=limits,
    ).start()
    (out / "started").write_text("ok")
    threading.Event().wait()


if __name__ == "__main__":
    main(sys.argv[1])
