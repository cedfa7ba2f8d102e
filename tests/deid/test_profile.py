"""The rules around Table E.1-1: private attributes, overlays and curves, sequences,
burned-in annotation, pseudonym consistency, the marks of a de-identified instance,
and pydicom's bundled files through the whole profile."""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from isthmus.deid import (
    DeidentificationOptions,
    DeidentificationOptionsError,
    Deidentifier,
    Excluded,
    PixelRule,
    PixelRuleError,
    encode,
    table,
)
from isthmus.testing.generate import ROOT

KEY, OTHER_KEY = b"k" * 32, b"o" * 32
BUNDLED = Path(pydicom.__file__).parent / "data" / "test_files"


def instance(**attrs: object) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID = generate_uid(ROOT)
    ds.StudyInstanceUID = generate_uid(ROOT)
    ds.SeriesInstanceUID = generate_uid(ROOT)
    ds.PatientName, ds.PatientID, ds.StudyDate = "Doe^Jane", "MRN-4711", "20240110"
    for name, value in attrs.items():
        setattr(ds, name, value)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.SourceApplicationEntityTitle = "HOSPITAL_CT"
    return ds


def image(burned_in: str | None = None) -> Dataset:
    ds = instance(Modality="US", Manufacturer="Acme", Rows=16, Columns=16)
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = bytes([200]) * 256
    if burned_in:
        ds.BurnedInAnnotation = burned_in
    return ds


# ------------------------------------------------------------- private attributes
def with_private() -> Dataset:
    ds = instance()
    siemens = ds.private_block(0x0019, "SIEMENS MR HEADER", create=True)
    siemens.add_new(0x0C, "IS", "1000")  # b-value: known safe
    siemens.add_new(0x10, "LO", "Doe Jane scan")  # not listed: unsafe
    other = ds.private_block(0x0029, "ACME SECRET", create=True)
    other.add_new(0x01, "LO", "Doe^Jane")
    return ds


def test_private_attributes_are_removed_by_the_basic_profile() -> None:
    after = Deidentifier(KEY).dataset(with_private())
    assert not [e for e in after if e.tag.is_private]


def test_retain_safe_private_keeps_only_listed_elements_and_their_creator() -> None:
    after = Deidentifier(KEY, DeidentificationOptions(retain_safe_private=True)).dataset(
        with_private()
    )
    private = {int(e.tag): e.value for e in after if e.tag.is_private}
    assert private == {0x00190010: "SIEMENS MR HEADER", 0x0019100C: "1000"}


# ------------------------------------------------------- curves, overlays, sequences
def test_overlay_groups_and_curves_are_removed_whole() -> None:
    ds = image()
    ds.add_new(0x60000010, "US", 16)  # Overlay Rows
    ds.add_new(0x60000011, "US", 16)
    ds.add_new(0x60003000, "OW", bytes(32))  # Overlay Data: X
    ds.add_new(0x50000005, "US", 1)  # a curve attribute
    after = Deidentifier(KEY).dataset(ds)
    assert not [e for e in after if e.tag.group in (0x5000, 0x6000)]
    assert after.PixelData == ds.PixelData


def test_sequences_the_table_does_not_list_are_walked_into() -> None:
    region = Dataset()
    region.CodeValue, region.CodingSchemeDesignator = "T-D4000", "SRT"
    region.PatientName = "Doe^Jane"  # nonsense there, but identifying all the same
    ds = instance(AnatomicRegionSequence=Sequence([region]))
    assert table.actions(()).for_tag(0x00082218) is None
    after = Deidentifier(KEY).dataset(ds)
    item = after.AnatomicRegionSequence[0]
    assert item.CodeValue == "T-D4000" and str(item.PatientName) != "Doe^Jane"


def test_group_lengths_and_the_file_meta_are_rewritten() -> None:
    ds = instance()
    ds.add_new(0x00080000, "UL", 1234)
    after = Deidentifier(KEY).dataset(ds)
    assert 0x00080000 not in after
    assert after.file_meta.MediaStorageSOPInstanceUID == after.SOPInstanceUID
    assert "SourceApplicationEntityTitle" not in after.file_meta
    parsed = pydicom.dcmread(io.BytesIO(encode(after)))
    assert parsed.SOPInstanceUID == after.SOPInstanceUID


# ------------------------------------------------------------- burned-in annotation
def test_burned_in_annotation_without_a_rule_excludes_the_instance() -> None:
    with pytest.raises(Excluded, match="Burned In Annotation"):
        Deidentifier(KEY).dataset(image("YES"))
    assert Deidentifier(KEY).dataset(image("NO")).PixelData == image().PixelData


def test_a_pixel_rule_blanks_its_rectangles_and_says_so() -> None:
    rule = PixelRule(((0, 0, 16, 4),), modality="US", manufacturer="Acme")
    options = DeidentificationOptions(pixel_rules=(rule,))
    after = Deidentifier(KEY, options).dataset(image("YES"))
    pixels = np.frombuffer(after.PixelData, np.uint8).reshape(16, 16)
    assert (pixels[:4] == 0).all() and (pixels[4:] == 200).all()
    assert after.BurnedInAnnotation == "NO"
    assert "113101" in [c.CodeValue for c in after.DeidentificationMethodCodeSequence]
    other = DeidentificationOptions(pixel_rules=(PixelRule(((0, 0, 1, 1),), modality="CT"),))
    with pytest.raises(Excluded):
        Deidentifier(KEY, other).dataset(image("YES"))


def test_compressed_pixel_data_with_burned_in_text_is_excluded_not_decoded() -> None:
    ds = pydicom.dcmread(BUNDLED / "SC_rgb_jpeg_dcmtk.dcm")
    ds.BurnedInAnnotation = "YES"
    rule = PixelRule(((0, 0, 4, 4),))
    with pytest.raises(Excluded, match="only native"):
        Deidentifier(KEY, DeidentificationOptions(pixel_rules=(rule,))).dataset(ds)


def test_pixel_rules_and_options_from_json_refuse_what_they_do_not_know() -> None:
    ok = DeidentificationOptions.from_mapping(
        {"dates": "modified", "pixel_rules": [{"rectangles": [[0, 0, 10, 10]], "rows": 512}]}
    )
    assert ok.pixel_rules[0].rows == 512 and ok.dates == "modified"
    for bad in ({"retain_everything": True}, {"dates": "keep"}, {"retain_uids": "yes"}):
        with pytest.raises(DeidentificationOptionsError):
            DeidentificationOptions.from_mapping(bad)
    with pytest.raises(PixelRuleError):
        DeidentificationOptions.from_mapping({"pixel_rules": [{"rectangles": [[0, 0, -1, 2]]}]})


# ------------------------------------------------------------------ consistency
def test_pseudonyms_are_the_same_within_a_project_and_differ_across_projects() -> None:
    ds = instance(AccessionNumber="ACC123")
    one, two = Deidentifier(KEY).dataset(ds), Deidentifier(KEY).dataset(ds)
    other = Deidentifier(OTHER_KEY).dataset(ds)
    for name in ("PatientID", "PatientName", "AccessionNumber", "StudyInstanceUID"):
        assert one[name].value == two[name].value != other[name].value != ds[name].value
        assert one[name].value != ds[name].value
    assert str(one.PatientName) == one.PatientID
    assert len(one.StudyInstanceUID) <= 64 and one.SOPInstanceUID != one.StudyInstanceUID


def test_references_point_to_the_new_uids_of_what_they_reference() -> None:
    first = image()
    ref = Dataset()
    ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID = (
        first.SOPClassUID,
        first.SOPInstanceUID,
    )
    second = image()
    second.ReferencedImageSequence = Sequence([ref])
    deid = Deidentifier(KEY)
    new_first, new_second = deid.dataset(first), deid.dataset(second)
    item = new_second.ReferencedImageSequence[0]
    assert item.ReferencedSOPInstanceUID == new_first.SOPInstanceUID
    assert item.ReferencedSOPClassUID == first.SOPClassUID  # a class, not an instance


def test_modified_dates_move_by_whole_days_fixed_per_patient() -> None:
    options = DeidentificationOptions(dates="modified")
    a = Deidentifier(KEY, options).dataset(instance(StudyDate="20240110", StudyTime="0830"))
    b = Deidentifier(KEY, options).dataset(instance(StudyDate="20240120"))
    other = Deidentifier(KEY, options).dataset(instance(PatientID="MRN-9", StudyDate="20240110"))
    days = [pydicom.valuerep.DA(x.StudyDate) for x in (a, b)]
    assert (days[1] - days[0]).days == 10 and a.StudyDate < "20240110"
    assert a.StudyTime == "0830" and other.StudyDate != a.StudyDate
    assert a.LongitudinalTemporalInformationModified == "MODIFIED"


def test_every_output_says_how_it_was_deidentified() -> None:
    options = DeidentificationOptions(dates="full", retain_device_identity=True)
    after = Deidentifier(KEY, options).dataset(instance())
    assert after.PatientIdentityRemoved == "YES"
    codes = [
        (c.CodeValue, c.CodingSchemeDesignator) for c in after.DeidentificationMethodCodeSequence
    ]
    assert codes == [("113100", "DCM"), ("113106", "DCM"), ("113109", "DCM")]
    assert after.LongitudinalTemporalInformationModified == "UNMODIFIED"
    assert all(len(v) <= 64 for v in after.DeidentificationMethod)
    assert after.StudyDate == "20240110"


def test_a_data_set_without_sop_uids_is_excluded() -> None:
    with pytest.raises(Excluded, match="not a composite instance"):
        Deidentifier(KEY).dataset(Dataset())


def test_the_stream_hook_leaves_out_and_reports_excluded_instances() -> None:
    left_out: list[str] = []
    out = list(
        Deidentifier(KEY).stream(
            [image(), image("YES"), image()], lambda ds, exc: left_out.append(str(exc))
        )
    )
    assert len(out) == 2 and len(left_out) == 1


# ------------------------------------------------------------- pydicom's files
def bundled_instances() -> list[Path]:
    paths = []
    for path in sorted(BUNDLED.rglob("*.dcm")):
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except Exception:
            continue
        if "SOPInstanceUID" in ds and "SOPClassUID" in ds and "TransferSyntaxUID" in ds.file_meta:
            paths.append(path)
    return paths


def identifying_strings(ds: Dataset) -> list[bytes]:
    out = []
    for keyword in ("PatientName", "PatientID", "StudyInstanceUID", "SOPInstanceUID"):
        value = str(ds.get(keyword, "") or "")
        if len(value) >= 6 and value not in ("ANONYMIZED", "Anonymized"):
            out.append(value.encode())
    return out


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_every_bundled_pydicom_file_deidentifies_to_a_valid_file_with_its_pixels() -> None:
    paths = bundled_instances()
    assert len(paths) > 60
    deid, done, excluded = Deidentifier(KEY), 0, []
    for path in paths:
        data = path.read_bytes()
        before = pydicom.dcmread(io.BytesIO(data))
        try:
            out = deid.part10(data)
        except Excluded as exc:
            excluded.append((path.name, str(exc)))
            continue
        after = pydicom.dcmread(io.BytesIO(out))
        done += 1
        assert after.PatientIdentityRemoved == "YES", path.name
        assert after.file_meta.TransferSyntaxUID == before.file_meta.TransferSyntaxUID
        if "PixelData" in before:
            assert after.PixelData == before.PixelData, path.name
        for value in identifying_strings(before):
            assert value not in out, (path.name, value)
        assert re.fullmatch(r"2\.25\.\d+", after.SOPInstanceUID)
    assert done >= len(paths) - 3, excluded


def test_uids_the_table_does_not_list_are_replaced_unless_the_standard_defines_them() -> None:
    source = generate_uid(ROOT)
    ds = instance(
        MultiFrameSourceSOPInstanceUID=source, SOPClassesInStudy=["1.2.840.10008.5.1.4.1.1.2"]
    )
    code = Dataset()
    code.CodingSchemeUID = "2.16.840.1.113883.6.96"  # SNOMED CT: registered, not in pydicom's list
    ds.CodingSchemeIdentificationSequence = Sequence([code])
    assert table.actions(()).for_tag(0x00081167) is None  # not listed in E.1-1
    deid = Deidentifier(KEY)
    after = deid.dataset(ds)
    assert after.MultiFrameSourceSOPInstanceUID == deid.pseudonyms.uid(source)
    assert after.SOPClassesInStudy == "1.2.840.10008.5.1.4.1.1.2"
    assert after.CodingSchemeIdentificationSequence[0].CodingSchemeUID == "2.16.840.1.113883.6.96"
    kept = Deidentifier(KEY, DeidentificationOptions(retain_uids=True)).dataset(ds)
    assert kept.MultiFrameSourceSOPInstanceUID == source


def test_a_pixel_rule_cleans_every_frame_of_a_planar_colour_image() -> None:
    ds = instance(Rows=4, Columns=4, NumberOfFrames=2, BurnedInAnnotation="YES")
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 1
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = bytes(range(1, 97))  # 2 frames x 3 planes x 16 pixels, none zero
    before = ds.pixel_array.copy()
    options = DeidentificationOptions(pixel_rules=(PixelRule(((0, 0, 2, 2),)),))
    after = Deidentifier(KEY, options).dataset(ds).pixel_array
    assert (after[:, :2, :2, :] == 0).all()
    mask = np.ones(after.shape, bool)
    mask[:, :2, :2, :] = False
    assert (after[mask] == before[mask]).all()


def test_retain_safe_private_keeps_what_the_data_set_declares_safe() -> None:
    """PS3.3 C.12.1.1.7: a SAFE block whole, of a MIXED block the elements named."""
    ds = instance()
    whole = ds.private_block(0x0031, "ACME SAFE", create=True)
    whole.add_new(0x01, "LO", "protocol A")
    mixed = ds.private_block(0x0033, "ACME MIXED", create=True)
    mixed.add_new(0x01, "DS", "1.5")
    mixed.add_new(0x02, "LO", "Doe^Jane")
    items = []
    for group, creator, status, elements in (
        (0x0031, "ACME SAFE", "SAFE", None),
        (0x0033, "ACME MIXED", "MIXED", [0x01]),
    ):
        item = Dataset()
        item.PrivateGroupReference, item.PrivateCreatorReference = group, creator
        item.BlockIdentifyingInformationStatus = status
        if elements:
            item.NonidentifyingPrivateElements = elements
        items.append(item)
    ds.PrivateDataElementCharacteristicsSequence = Sequence(items)
    options = DeidentificationOptions(retain_safe_private=True)
    kept = {int(e.tag) for e in Deidentifier(KEY, options).dataset(ds) if e.tag.is_private}
    assert kept == {0x00310010, 0x00311001, 0x00330010, 0x00331001}
    assert not [e for e in Deidentifier(KEY).dataset(ds) if e.tag.is_private]


def test_clean_descriptors_takes_the_patients_name_out_of_descriptions() -> None:
    # PS3.15 E.3.5: a cleaned description keeps its meaning without identifying
    # information; the patient's name (one PN value, pydicom's PersonName) is such.
    before = instance(StudyDescription="CT head Doe", ImageComments="Jane Doe, see MRN-4711")
    after = Deidentifier(KEY, DeidentificationOptions(clean_descriptors=True)).dataset(before)
    assert after.StudyDescription == "CT head ***"
    assert after.ImageComments == "*** ***, see ***"


@pytest.mark.parametrize(
    "charset, name, description, comments",
    [
        (
            ["", "ISO 2022 IR 87"],
            "Yamada^Tarou=山田^太郎=やまだ^たろう",
            "山田太郎 頭部CT",
            "やまだ たろう様",
        ),
        (["", "ISO 2022 IR 149"], "Hong^Gildong=洪^吉洞=홍^길동", "홍길동 CT", "洪吉洞"),
        (["", "ISO 2022 IR 58"], "Zhang^XiaoDong=张^小东", "张小东 CT", "张 小东"),
        ("GB18030", "Wang^XiaoDong=王^小东", "王小东 CT", "王小东"),
    ],
)
def test_clean_descriptors_takes_a_name_written_in_ideographs_or_kana_out(
    charset: object, name: str, description: str, comments: str
) -> None:
    """PS3.5 6.2.1.2: a Japanese, Korean or Chinese name's components are one or two
    characters, shorter than an identifier the scrubber takes (it would match
    anywhere); written in text they come together, with or without a space between
    them (PS3.5 Annexes H, I, J, K), and that whole name is taken out."""
    before = instance(
        SpecificCharacterSet=charset,
        PatientName=name,
        StudyDescription=description,
        ImageComments=comments,
    )
    options = DeidentificationOptions(clean_descriptors=True)
    out = Deidentifier(KEY, options).part10(encode(before))
    after = pydicom.dcmread(io.BytesIO(out))
    assert after.StudyDescription in ("*** CT", "*** 頭部CT")
    assert "***" in after.ImageComments
    assert not set(after.ImageComments) & set(name.split("=", 1)[1]) - set("^")


def content_item(value_type: str, **attrs: object) -> Dataset:
    item = Dataset()
    item.RelationshipType, item.ValueType = "CONTAINS", value_type
    concept = Dataset()
    concept.CodeValue, concept.CodingSchemeDesignator = "121071", "DCM"
    concept.CodeMeaning = "Finding"
    item.ConceptNameCodeSequence = [concept]
    for name, value in attrs.items():
        setattr(item, name, value)
    return item


def test_text_in_sr_content_and_graphic_annotations_is_replaced() -> None:
    # Table E.1-1: Content Sequence and Graphic Annotation Sequence are D (replaced)
    # unless Clean Structured Content / Clean Graphics, which Isthmus does not offer;
    # the free text of their items must not come through as it was.
    report = instance(ValueType="CONTAINER")
    report.ContentSequence = [
        content_item("TEXT", TextValue="Jane Doe, MRN-4711, seen on 2024-01-10"),
        content_item("NUM", MeasuredValueSequence=[]),
    ]
    annotation = Dataset()
    text = Dataset()
    text.UnformattedTextValue = "Doe^Jane MRN-4711"
    annotation.TextObjectSequence = [text]
    report.GraphicAnnotationSequence = [annotation]
    after = Deidentifier(KEY).dataset(report)
    assert after.ContentSequence[0].TextValue == "ANONYMIZED"
    assert after.ContentSequence[0].ConceptNameCodeSequence[0].CodeValue == "121071"
    assert after.ContentSequence[1].ValueType == "NUM"
    unformatted = after.GraphicAnnotationSequence[0].TextObjectSequence[0].UnformattedTextValue
    assert unformatted == "ANONYMIZED"
    assert b"MRN-4711" not in encode(after) and b"Doe" not in encode(after)
