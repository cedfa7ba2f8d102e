"""Transfer objects straight in S3 (relay/objects_s3.py), on a real SeaweedFS."""

from __future__ import annotations

import pytest

from isthmus.relay.objects import MissingObject, ObjectsUnavailable
from isthmus.relay.objects_s3 import S3Objects
from isthmus.testing.net import free_port


def test_objects_are_stored_whole_listed_and_deleted_by_transfer(seaweedfs) -> None:
    objects = S3Objects(seaweedfs.url())
    objects.put("A.B.1", "0.0", b"sealed bytes")
    objects.put("A.B.1", "manifest", b"manifest")
    objects.put("A.B.2", "0.0", b"other transfer")
    assert objects.get("A.B.1", "0.0") == b"sealed bytes"
    assert objects.names("A.B.1") == ["0.0", "manifest"]
    objects.delete_transfer("A.B.1")
    assert objects.names("A.B.1") == []
    assert objects.get("A.B.2", "0.0") == b"other transfer"


def test_a_missing_object_is_missing_not_unavailable(seaweedfs) -> None:
    with pytest.raises(MissingObject):
        S3Objects(seaweedfs.url()).get("A.B.1", "7.0")


def test_an_unreachable_store_is_unavailable_after_bounded_retries() -> None:
    url = f"s3://isthmus/x?endpoint=http://127.0.0.1:{free_port()}&retry_timeout=1"
    objects = S3Objects(url)
    with pytest.raises(ObjectsUnavailable, match="PUT"):
        objects.put("A.B.1", "0.0", b"x")
    with pytest.raises(ObjectsUnavailable, match="GET"):
        objects.get("A.B.1", "0.0")
    objects.delete_transfer("A.B.1")  # logged, never raises
