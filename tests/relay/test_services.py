"""Which relay service a presentation context asks for (relay/services.py): what an
export's services are checked against."""

from __future__ import annotations

import pytest

from isthmus.dicom.ul.items import PresentationContextRQ, RoleSelection
from isthmus.relay.services import permitted_contexts, service_of

CT = "1.2.840.10008.5.1.4.1.1.2"
TS = ("1.2.840.10008.1.2",)


@pytest.mark.parametrize(
    "sop_class, service",
    [
        ("1.2.840.10008.1.1", "echo"),
        ("1.2.840.10008.5.1.4.1.2.1.1", "find"),  # Patient Root FIND
        ("1.2.840.10008.5.1.4.1.2.2.1", "find"),  # Study Root FIND
        ("1.2.840.10008.5.1.4.1.2.2.2", "move"),
        ("1.2.840.10008.5.1.4.1.2.2.3", "get"),
        ("1.2.840.10008.5.1.4.1.2.4.3", "get"),  # Composite Instance Root GET
        (CT, "store"),
        ("1.2.840.10008.5.1.4.31", None),  # Modality Worklist: not relayed
        ("1.2.840.10008.1.20.1", None),  # Storage Commitment: not relayed
    ],
)
def test_each_sop_class_asks_for_its_service(sop_class: str, service: str | None) -> None:
    assert service_of(sop_class) == service


def test_a_storage_context_is_a_c_get_s_when_the_caller_takes_the_scp_role() -> None:
    contexts = [
        PresentationContextRQ(1, "1.2.840.10008.5.1.4.1.2.2.3", TS),
        PresentationContextRQ(3, CT, TS),
    ]
    get_only = {"get"}.__contains__
    assert [c.context_id for c in permitted_contexts(contexts, (), get_only)] == [1]
    roles = (RoleSelection(CT, False, True),)
    assert [c.context_id for c in permitted_contexts(contexts, roles, get_only)] == [1, 3]
    store_only = {"store"}.__contains__
    assert [c.context_id for c in permitted_contexts(contexts, roles, store_only)] == [3]
