"""The Basic Application Level Confidentiality Profile (PS3.15 E.2) and its options.

`Deidentifier` applies Table E.1-1 (table.py) to a data set, element by element and into
every sequence item, with the actions resolved for the chosen options (options.py):

- Standard attributes the table lists get its action; attributes it does not list are
  kept (E.2: the table lists what the profile removes or replaces).  Sequences are
  walked into whatever their action, except X (removed) and Z (emptied).
- Text Value (0040,A160) of SR content items and Unformatted Text Value (0070,0006) of
  graphic annotations get D: the table replaces their sequences (Content Sequence,
  Graphic Annotation Sequence: D) but does not list the free text of the items.
- Private attributes are removed, or under Retain Safe Private kept when known safe or
  declared safe by the data set itself (safe_private.py).  Group lengths (gggg,0000) go (they would be wrong).
- Curves (50xx) are removed; when Overlay Data (60xx,3000) is, the whole overlay group
  goes with it (what remains of an overlay without its data is not a valid overlay).
- Combined actions depend on the attribute's type in its IOD, which a generic tool does
  not know per SOP class; the value decides instead: a Type 1 attribute is never empty,
  so Z/D and X/Z/D give Z for an empty value and D otherwise, X/D gives X for an empty
  value and D otherwise, X/Z gives Z, X/Z/U* gives Z when empty and U (the sequence kept,
  its UIDs replaced) otherwise.  The output is never less conformant than the input.
- D and Z on Patient's Name, Patient ID, Accession Number and Study ID give pseudonyms
  (Z allows a dummy value) so that a project's studies stay apart and linkable; U and
  UI values give keyed-hash UIDs (pseudonyms.py): consistent within a project.
- Burned In Annotation (0028,0301) = YES: pixels are cleaned by a matching rule (Clean
  Pixel Data, E.3.1) or the instance is excluded (`Excluded`): pixel text cannot be
  found reliably without knowing where the device writes it.

Every output carries Patient Identity Removed = YES, De-identification Method and its
Code Sequence (CID 7050), and Longitudinal Temporal Information Modified (PS3.3 C.7.1.1).
"""

from __future__ import annotations

import copy
import io
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import pydicom
from pydicom.datadict import dictionary_has_tag, dictionary_VR
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import UID, ExplicitVRLittleEndian

from isthmus.deid import pixels, safe_private, table, values
from isthmus.deid.options import DeidentificationOptions
from isthmus.deid.pseudonyms import Pseudonyms

METHOD = "Isthmus, PS3.15 Annex E"
PATIENT_NAME, PATIENT_ID, ISSUER = 0x00100010, 0x00100020, 0x00100021
ACCESSION, STUDY_ID = 0x00080050, 0x00200010
OVERLAY_DATA = 0x60003000
# UI attributes whose values are registered (coding schemes, context groups): kept.
KNOWN_UID_KEYWORDS = frozenset({"CodingSchemeUID", "ContextUID", "MappingResourceUID"})
TEMPORAL = {"remove": "REMOVED", "full": "UNMODIFIED", "modified": "MODIFIED"}
# Free text in the items of sequences the table replaces (D) unless Clean Structured
# Content or Clean Graphics, options Isthmus does not offer: Text Value (0040,A160) of
# SR content items (Content Sequence) and Unformatted Text Value (0070,0006) of text
# annotations (Graphic Annotation Sequence).  The table lists the sequences, not these.
BEYOND_TABLE = {0x0040A160: "D", 0x00700006: "D"}
# What a combined action becomes for an (empty, non-empty) value (module docstring).
COMBINED = {
    "Z/D": ("Z", "D"),
    "X/Z": ("Z", "Z"),
    "X/D": ("X", "D"),
    "X/Z/D": ("Z", "D"),
    "X/Z/U*": ("Z", "U"),
}


class Excluded(Exception):
    """An instance that cannot be de-identified as asked (and is left out, not leaked)."""


@dataclass
class _Instance:
    """What the walk needs to know about the instance being de-identified."""

    patient: tuple[str, str]  # (issuer, patient ID) or a stand-in when there is none
    shift: int  # days dates move back (Modified Dates)
    scrub: re.Pattern[str] | None  # identifiers to take out of cleaned text


class Deidentifier:
    """De-identifies data sets for one project (its key) with one set of options."""

    def __init__(self, key: bytes, options: DeidentificationOptions | None = None) -> None:
        self.options = options or DeidentificationOptions()
        self.pseudonyms = Pseudonyms(key)
        self.actions = table.actions(tuple(self.options.columns))
        self._drop_overlays = self.actions.for_tag(OVERLAY_DATA) == "X"
        # Whether any text gets action C (else the identifiers need not be gathered).
        self._cleans_text = any(
            action == "C" and dictionary_VR(tag) in values.TEXT
            for tag, action in self.actions.exact.items()
            if dictionary_has_tag(tag)
        )

    # ------------------------------------------------------------ entry points
    def dataset(self, ds: Dataset, in_place: bool = False) -> Dataset:
        """The de-identified data set (file meta included); raises `Excluded`."""
        if "SOPClassUID" not in ds or "SOPInstanceUID" not in ds:
            raise Excluded("not a composite instance (no SOP Class or SOP Instance UID)")
        if not in_place:
            ds = copy.deepcopy(ds)
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        cleaned = self._pixels(ds)
        instance = self._instance(ds)
        self._walk(ds, instance)
        self._mark(ds, cleaned)
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.file_meta.TransferSyntaxUID = syntax or ExplicitVRLittleEndian
        return ds

    def part10(self, data: bytes) -> bytes:
        """A Part 10 file in, the de-identified Part 10 file out; raises `Excluded`."""
        ds = pydicom.dcmread(io.BytesIO(data))
        return encode(self.dataset(ds, in_place=True))

    def stream(
        self,
        datasets: Iterable[Dataset],
        excluded: Callable[[Dataset, Excluded], None] | None = None,
    ) -> Iterator[Dataset]:
        """For exports: data sets in, de-identified ones
        out, each excluded one left out and handed to `excluded` (if given)."""
        for ds in datasets:
            try:
                yield self.dataset(ds)
            except Excluded as exc:
                if excluded is not None:
                    excluded(ds, exc)

    # ------------------------------------------------------------ the steps
    def _pixels(self, ds: Dataset) -> bool:
        """Clean burned-in text by rule, or exclude (E.3.1); True when cleaned."""
        if str(ds.get("BurnedInAnnotation", "")).strip().upper() != "YES":
            return False
        rule = next((r for r in self.options.pixel_rules if r.matches(ds)), None)
        if rule is None:
            raise Excluded("Burned In Annotation is YES and no pixel rule matches the image")
        try:
            pixels.clean(ds, rule)
        except pixels.PixelRuleError as exc:
            raise Excluded(f"burned-in annotation not cleaned: {exc}") from None
        return True

    def _instance(self, ds: Dataset) -> _Instance:
        patient_id = str(ds.get("PatientID", "") or "").strip()
        if patient_id:
            patient = (str(ds.get("IssuerOfPatientID", "") or ""), patient_id)
        else:  # no ID: the name and birth date stand for the patient, else the study
            name = str(ds.get("PatientName", "") or "")
            born = str(ds.get("PatientBirthDate", "") or "")
            patient = ("", f"{name}\0{born}") if name else ("", str(ds.get("StudyInstanceUID")))
        shift = self.pseudonyms.days("date-shift", *patient)
        scrub = values.scrubber(self._identifiers(ds)) if self._cleans_text else None
        return _Instance(patient, shift, scrub)

    def _identifiers(self, ds: Dataset) -> Iterator[str]:
        """The text values this profile removes or replaces, to take out of cleaned text."""
        for elem in ds.iterall():
            if elem.VR not in values.TEXT | {"DA", "DT", "AE"} or elem.is_empty:
                continue
            action = self._action(int(elem.tag))
            if action is None or action in ("K", "C"):
                continue
            for value in values.values_of(elem.value):
                text = str(value)
                yield text
                if elem.VR == "PN":
                    yield from re.split(r"[\^=\s]+", text)
                    yield from values.written_names(text)

    def _walk(self, ds: Dataset, instance: _Instance) -> None:
        declared = safe_private.declared(ds) if self.actions.private != "X" else set()
        for elem in list(ds):
            tag = int(elem.tag)
            group = tag >> 16
            if tag & 0xFFFF == 0 or (
                self._drop_overlays and 0x6000 <= group <= 0x60FF and group % 2 == 0
            ):
                del ds[tag]
            elif elem.tag.is_private:
                self._private(ds, elem, declared)
            else:
                action = self._action(tag)
                if action is None:
                    if elem.VR == "SQ":
                        self._items(elem, instance)
                    elif elem.VR == "UI" and self._unlisted_instance_uid(elem):
                        elem.value = self._dummy(elem)
                else:
                    self._apply(ds, elem, action, instance)
        if self.actions.private != "X":
            self._drop_unused_creators(ds)

    def _action(self, tag: int) -> str | None:
        """The table's action for a standard tag, or the rule beyond it (BEYOND_TABLE)."""
        action = self.actions.for_tag(tag)
        return action if action is not None else BEYOND_TABLE.get(tag)

    def _unlisted_instance_uid(self, elem: DataElement) -> bool:
        """A UID of an attribute the table does not list, naming an instance, a frame of
        reference or the like (not a SOP class, transfer syntax or other UID the standard
        defines): replaced like the table's U, since a UID often embeds a date or a
        device's address, and references must still meet (unless Retain UIDs)."""
        if self.options.retain_uids or elem.is_empty:
            return False
        keyword = elem.keyword or ""
        if "Class" in keyword or "TransferSyntax" in keyword or keyword in KNOWN_UID_KEYWORDS:
            return False
        return not any(UID(str(v)).name != str(v) for v in values.values_of(elem.value))

    def _items(self, elem: DataElement, instance: _Instance) -> None:
        for item in elem.value or ():
            self._walk(item, instance)

    def _private(self, ds: Dataset, elem: DataElement, declared: safe_private.Declared) -> None:
        if self.actions.private == "X":
            del ds[elem.tag]
            return
        if elem.tag.is_private_creator:
            return  # kept while an element of its block is (_drop_unused_creators)
        tag = int(elem.tag)
        creator = ds.get((tag & 0xFFFF0000) | ((tag >> 8) & 0xFF))
        name = str(creator.value) if creator is not None else None
        if not safe_private.is_safe(name, tag, elem.VR, declared):
            del ds[elem.tag]

    @staticmethod
    def _drop_unused_creators(ds: Dataset) -> None:
        blocks = {(int(e.tag) >> 16, (int(e.tag) >> 8) & 0xFF) for e in ds if e.tag.is_private}
        for elem in list(ds):
            tag = int(elem.tag)
            if elem.tag.is_private_creator and (tag >> 16, tag & 0xFF) not in blocks:
                del ds[tag]

    def _apply(self, ds: Dataset, elem: DataElement, action: str, instance: _Instance) -> None:
        """One listed attribute: its action (combined ones resolved by the value)."""
        if action in COMBINED:
            action = COMBINED[action][0 if elem.is_empty else 1]
        if action == "X":
            del ds[elem.tag]
        elif elem.VR == "SQ":
            if action == "Z":
                elem.value = Sequence()
            else:  # D, K, C, U: the items stay, each de-identified in turn
                self._items(elem, instance)
        elif action == "Z":
            elem.value = self._pseudonym(elem, instance) or elem.empty_value
        elif action == "D":
            elem.value = self._pseudonym(elem, instance) or self._dummy(elem)
        elif action == "U":
            elem.value = self._dummy(elem)
        elif action == "C":
            elem.value = self._clean(elem, instance)

    def _pseudonym(self, elem: DataElement, instance: _Instance) -> str | None:
        tag = int(elem.tag)
        if elem.is_empty or tag not in (PATIENT_NAME, PATIENT_ID, ACCESSION, STUDY_ID):
            return None
        p = self.pseudonyms
        if tag in (PATIENT_NAME, PATIENT_ID):
            return p.identifier("patient", *instance.patient, prefix="P")
        purpose, prefix = ("accession", "A") if tag == ACCESSION else ("study-id", "S")
        return p.identifier(purpose, *instance.patient, str(elem.value), prefix=prefix)

    def _dummy(self, elem: DataElement) -> Any:
        if elem.VR == "UI":
            uids = [self.pseudonyms.uid(str(u)) for u in values.values_of(elem.value)]
            return uids[0] if len(uids) == 1 else uids or self.pseudonyms.uid("")
        return values.dummy(elem.VR)

    def _clean(self, elem: DataElement, instance: _Instance) -> Any:
        """Action C (E.3): a value of similar meaning without identifying information."""
        vr, items = elem.VR, values.values_of(elem.value)
        if vr == "DA":
            out = [values.shift_date(str(v), instance.shift) for v in items]
        elif vr == "DT":
            out = [values.shift_datetime(str(v), instance.shift) for v in items]
        elif vr == "UI":
            return self._dummy(elem)
        elif vr == "AE":
            out = [self.pseudonyms.identifier("ae", str(v), prefix="AE") for v in items]
        elif vr in values.TEXT:
            out = [values.scrub(str(v), instance.scrub, vr) for v in items]
        else:
            return elem.value  # numbers, times (whole-day shifts keep them true), codes
        return out[0] if len(out) == 1 else out

    def _mark(self, ds: Dataset, pixels_cleaned: bool) -> None:
        """The attributes that say how this instance was de-identified (PS3.3 C.7.1.1)."""
        codes = self.options.codes(pixels_cleaned)
        ds.PatientIdentityRemoved = "YES"
        ds.DeidentificationMethod = [METHOD] + [meaning for _, meaning in codes[1:]]
        items = []
        for value, meaning in codes:
            item = Dataset()
            item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, "DCM", meaning
            items.append(item)
        ds.DeidentificationMethodCodeSequence = Sequence(items)
        ds.LongitudinalTemporalInformationModified = TEMPORAL[self.options.dates]
        if pixels_cleaned:
            ds.BurnedInAnnotation = "NO"


def encode(ds: Dataset) -> bytes:
    """A data set with its file meta as Part 10 bytes (in its file meta's syntax)."""
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()
