"""Accept negotiation (PS3.18 8.7): quality values, wildcards, multipart types, syntaxes."""

from __future__ import annotations

from isthmus.web.negotiation import Offer, parse_accept, parse_media_type, select, split_list

JSON = Offer("application/dicom+json")
XML = Offer("application/dicom+xml", multipart=True)
DICOM = Offer("application/dicom", multipart=True, syntaxes=None)
OCTET = Offer(
    "application/octet-stream", True, frozenset({"1.2.840.10008.1.2.1"}), "1.2.840.10008.1.2.1"
)
JLS = Offer("image/jls", True, frozenset({"1.2.840.10008.1.2.4.80"}), "1.2.840.10008.1.2.4.80")


def choose(accept: str, offers):
    return select(parse_accept([accept] if accept else []), offers)


def test_no_accept_header_takes_the_first_offer():
    assert choose("", [JSON, XML]).media_type == "application/dicom+json"


def test_quality_values_decide():
    accept = 'application/dicom+json;q=0.5, multipart/related; type="application/dicom+xml"'
    assert choose(accept, [JSON, XML]).media_type == "application/dicom+xml"


def test_ties_go_to_the_resource_order():
    assert (
        choose(
            "multipart/related; type=application/octet-stream, multipart/related; type=image/jls",
            [JLS, OCTET],
        ).media_type
        == "image/jls"
    )


def test_wildcards_match():
    assert choose("*/*", [JSON]).media_type == "application/dicom+json"
    assert choose("application/*", [JSON]).media_type == "application/dicom+json"
    assert choose('multipart/related; type="image/*"', [OCTET, JLS]).media_type == "image/jls"


def test_q_zero_excludes():
    assert (
        choose("application/dicom+json;q=0, */*", [JSON, XML]).media_type == "application/dicom+xml"
    )


def test_nothing_acceptable_is_none():
    assert choose("image/png", [JSON, XML]) is None
    assert choose('multipart/related; type="application/dicom+json"', [JSON]) is None


def test_transfer_syntax_parameter():
    choice = choose('multipart/related; type="application/dicom"; transfer-syntax=*', [DICOM])
    assert choice.transfer_syntax == "*"
    assert (
        choose(
            "multipart/related; type=application/octet-stream; "
            "transfer-syntax=1.2.840.10008.1.2.4.50",
            [OCTET],
        )
        is None
    )
    assert (
        choose("multipart/related; type=application/octet-stream", [OCTET]).transfer_syntax
        == "1.2.840.10008.1.2.1"
    )


def test_most_specific_range_gives_the_quality():
    accept = "*/*;q=0.1, application/dicom+json;q=0.9, multipart/related;q=0.2"
    assert choose(accept, [XML, JSON]).media_type == "application/dicom+json"


def test_parsing_quoted_parameters_and_lists():
    media_type, params = parse_media_type(
        'Multipart/Related; Type="application/dicom"; boundary="a;b"'
    )
    assert media_type == "multipart/related"
    assert params == {"type": "application/dicom", "boundary": "a;b"}
    assert split_list('a/b; x="1,2", c/d') == ['a/b; x="1,2"', "c/d"]
    assert parse_accept(["text/html;q=abc"])[0].q == 1.0
