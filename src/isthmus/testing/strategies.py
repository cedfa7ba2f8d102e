"""Hypothesis strategies for PS3.8 PDUs, shared by the property suites (issue 15):
`pdus` generates every PDU type with every item and sub-item, `mutated` damages an
encoded one (bytes flipped, set, inserted, deleted, cut off; the length field patched
to match half of the time, so that decoding goes past it), `hostile_pdu` adds absurd
lengths, unknown types and raw bytes.  Needs the `test` extra (hypothesis).
"""

from __future__ import annotations

import struct

from hypothesis import strategies as st

from isthmus.dicom.ul import pdu
from isthmus.dicom.ul.items import (
    CommonExtendedNegotiation,
    ExtendedNegotiation,
    PresentationContextAC,
    PresentationContextRQ,
    RoleSelection,
    UnknownItem,
    UserIdentityAC,
    UserIdentityRQ,
    UserInformation,
)

KNOWN_SUB_ITEMS = range(0x51, 0x5A)

uids = st.lists(st.integers(0, 99999).map(str), min_size=2, max_size=8).map(".".join)
printable = st.characters(min_codepoint=33, max_codepoint=126)
ae_titles = st.text(printable, min_size=1, max_size=16)
names = st.text(printable, min_size=1, max_size=16)
short_bytes = st.binary(max_size=40)

contexts_rq = st.builds(
    PresentationContextRQ,
    context_id=st.integers(0, 255),
    abstract_syntax=uids,
    transfer_syntaxes=st.lists(uids, min_size=1, max_size=4).map(tuple),
    reserved=st.integers(0, 255),
)
contexts_ac = st.builds(
    PresentationContextAC,
    context_id=st.integers(0, 255),
    result=st.integers(0, 255),
    transfer_syntax=st.none() | uids,
)
roles = st.builds(RoleSelection, uids, st.booleans(), st.booleans())
user_information = st.builds(
    UserInformation,
    max_length=st.integers(0, 2**32 - 1),
    implementation_class_uid=st.just("") | uids,
    implementation_version_name=st.just("") | names,
    async_window=st.none() | st.tuples(st.integers(0, 65535), st.integers(0, 65535)),
    roles=st.lists(roles, max_size=3).map(tuple),
    extended=st.lists(st.builds(ExtendedNegotiation, uids, short_bytes), max_size=2).map(tuple),
    common_extended=st.lists(
        st.builds(CommonExtendedNegotiation, uids, uids, st.lists(uids, max_size=3).map(tuple)),
        max_size=2,
    ).map(tuple),
    user_identity=st.none()
    | st.builds(UserIdentityRQ, st.integers(0, 255), st.booleans(), short_bytes, short_bytes)
    | st.builds(UserIdentityAC, short_bytes),
    unknown=st.lists(
        st.builds(
            UnknownItem,
            st.integers(0, 255).filter(lambda t: t not in KNOWN_SUB_ITEMS),
            short_bytes,
        ),
        max_size=2,
    ).map(tuple),
)
associate_rq = st.builds(
    pdu.AAssociateRQ,
    called_aet=ae_titles,
    calling_aet=ae_titles,
    protocol_version=st.integers(0, 65535),
    application_context=uids,
    user=user_information,
    contexts=st.lists(contexts_rq, max_size=5).map(tuple),
)
associate_ac = st.builds(
    pdu.AAssociateAC,
    called_aet=ae_titles,
    calling_aet=ae_titles,
    protocol_version=st.integers(0, 65535),
    application_context=uids,
    user=user_information,
    contexts=st.lists(contexts_ac, max_size=5).map(tuple),
)
byte = st.integers(0, 255)
pdvs = st.builds(pdu.PDV, byte, byte, st.binary(max_size=64))
pdus = st.one_of(
    associate_rq,
    associate_ac,
    st.builds(pdu.AAssociateRJ, byte, byte, byte),
    st.builds(pdu.PDataTF, st.lists(pdvs, min_size=1, max_size=4).map(tuple)),
    st.just(pdu.AReleaseRQ()),
    st.just(pdu.AReleaseRP()),
    st.builds(pdu.AAbort, byte, byte),
)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A valid PDU with bytes flipped, inserted, deleted or cut off; its length field
    patched to match what is left half of the time, so decoding goes past it."""
    data = bytearray(draw(pdus).encode())
    for _ in range(draw(st.integers(1, 4))):
        how = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "set"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if how == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif how == "set" and data:
            data[pos] = draw(st.sampled_from([0x00, 0xFF, 0x7F, 0x80, 0x01]))
        elif how == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif how == "delete":
            del data[pos : pos + draw(st.integers(1, 8))]
        else:
            del data[pos:]
    if len(data) >= pdu.PDU_HEADER and draw(st.booleans()):
        struct.pack_into(">I", data, 2, len(data) - pdu.PDU_HEADER)
    return bytes(data)


@st.composite
def hostile_pdu(draw: st.DrawFn) -> bytes:
    """Anything a hostile peer might send as one PDU."""
    kind = draw(st.sampled_from(["pdu", "mutated", "absurd", "unknown", "raw"]))
    if kind == "pdu":
        return bytes(draw(pdus).encode())
    if kind == "mutated":
        return bytes(draw(mutated()))
    if kind == "absurd":  # a length no limit allows, with a little body
        known = draw(st.sampled_from([1, 2, 3, 4, 5, 6, 7]))
        return pdu.header(known, draw(st.integers(2**24, 2**32 - 1))) + draw(st.binary(max_size=16))
    if kind == "unknown":
        body = draw(st.binary(max_size=16))
        unknown = draw(st.integers(0, 255).filter(lambda t: t not in pdu.PDU_NAMES))
        return pdu.header(unknown, len(body)) + body
    return bytes(draw(st.binary(min_size=1, max_size=64)))
