"""What a de-identification keeps: the Basic Profile and its options (PS3.15 E.3).

Each option has its column in Table E.1-1 (table.py) and its code in CID 7050
(PS3.16), which goes into De-identification Method Code Sequence (0012,0064) of every
de-identified instance.  Options the table has but Isthmus does not perform (Clean
Graphics, Clean Structured Content, Clean Recognizable Visual Features) are not offered:
their attributes get the Basic Profile's action.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from isthmus.deid.pixels import PixelRule

# CID 7050 "De-identification Method" (PS3.16), coding scheme DCM.
BASIC_PROFILE = ("113100", "Basic Application Confidentiality Profile")
CLEAN_PIXEL_DATA = ("113101", "Clean Pixel Data Option")
CLEAN_DESCRIPTORS = ("113105", "Clean Descriptors Option")
RETAIN_FULL_DATES = ("113106", "Retain Longitudinal Temporal Information Full Dates Option")
RETAIN_MODIFIED_DATES = (
    "113107",
    "Retain Longitudinal Temporal Information Modified Dates Option",
)
RETAIN_PATIENT_CHARACTERISTICS = ("113108", "Retain Patient Characteristics Option")
RETAIN_DEVICE_IDENTITY = ("113109", "Retain Device Identity Option")
RETAIN_UIDS = ("113110", "Retain UIDs Option")
RETAIN_SAFE_PRIVATE = ("113111", "Retain Safe Private Option")
RETAIN_INSTITUTION_IDENTITY = ("113112", "Retain Institution Identity Option")

DATES = ("remove", "full", "modified")


class DeidentificationOptionsError(ValueError):
    """Options that do not make sense (an unknown name, a wrong type)."""


@dataclass(frozen=True)
class DeidentificationOptions:
    """The options of one de-identification (all off: the Basic Profile alone).

    `dates`: "remove" (Basic Profile), "full" (Retain Longitudinal Temporal Information
    with Full Dates, E.3.6) or "modified" (the Modified Dates variant: every date shifted
    back by a number of days fixed per patient and project).  `pixel_rules`: where
    burned-in text is, per kind of image (Clean Pixel Data, E.3.1; pixels.py); without a
    matching rule an instance flagged Burned In Annotation = YES is excluded.
    """

    dates: str = "remove"
    retain_patient_characteristics: bool = False
    retain_device_identity: bool = False
    retain_institution_identity: bool = False
    retain_uids: bool = False
    clean_descriptors: bool = False
    retain_safe_private: bool = False
    pixel_rules: tuple[PixelRule, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.dates not in DATES:
            raise DeidentificationOptionsError(
                f"dates must be one of {', '.join(DATES)}, not {self.dates!r}"
            )

    @property
    def columns(self) -> list[str]:
        """The Table E.1-1 option columns these options select (table.py's names)."""
        chosen = {
            "retain_safe_private": self.retain_safe_private,
            "retain_uids": self.retain_uids,
            "retain_device_identity": self.retain_device_identity,
            "retain_institution_identity": self.retain_institution_identity,
            "retain_patient_characteristics": self.retain_patient_characteristics,
            "retain_full_dates": self.dates == "full",
            "retain_modified_dates": self.dates == "modified",
            "clean_descriptors": self.clean_descriptors,
        }
        return [name for name, on in chosen.items() if on]

    def codes(self, pixels_cleaned: bool = False) -> list[tuple[str, str]]:
        """CID 7050 codes of the profile and options applied (0012,0064)."""
        codes = [BASIC_PROFILE]
        if pixels_cleaned:
            codes.append(CLEAN_PIXEL_DATA)
        for on, code in (
            (self.clean_descriptors, CLEAN_DESCRIPTORS),
            (self.dates == "full", RETAIN_FULL_DATES),
            (self.dates == "modified", RETAIN_MODIFIED_DATES),
            (self.retain_patient_characteristics, RETAIN_PATIENT_CHARACTERISTICS),
            (self.retain_device_identity, RETAIN_DEVICE_IDENTITY),
            (self.retain_uids, RETAIN_UIDS),
            (self.retain_safe_private, RETAIN_SAFE_PRIVATE),
            (self.retain_institution_identity, RETAIN_INSTITUTION_IDENTITY),
        ):
            if on:
                codes.append(code)
        return codes

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any] | None) -> DeidentificationOptions:
        """DeidentificationOptions from JSON (the HTTP API, the CLI's --options): unknown names refused."""
        raw = dict(raw or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise DeidentificationOptionsError(
                f"unknown options {unknown}; known: {', '.join(sorted(known))}"
            )
        values: dict[str, Any] = {}
        for name, value in raw.items():
            if name == "dates":
                if not isinstance(value, str):
                    raise DeidentificationOptionsError("dates must be a string")
                values[name] = value
            elif name == "pixel_rules":
                if not isinstance(value, list):
                    raise DeidentificationOptionsError("pixel_rules must be a list of rules")
                values[name] = tuple(PixelRule.from_mapping(r) for r in value)
            elif not isinstance(value, bool):
                raise DeidentificationOptionsError(f"{name} must be true or false")
            else:
                values[name] = value
        return cls(**values)
