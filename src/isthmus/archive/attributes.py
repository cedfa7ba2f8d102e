"""Attributes kept as indexed columns, by level.

These are the C-FIND keys of PS3.4 C.6 and the QIDO-RS keys of PS3.18 table
10.6.1-5 (plus a few common ones).  Any other attribute is still matched and
returned, from each instance's stored DICOM JSON.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword

LEVELS = ("PATIENT", "STUDY", "SERIES", "IMAGE")


@dataclass(frozen=True)
class Attribute:
    keyword: str
    level: str
    column: str
    computed: bool = False  # derived from lower levels, not stored
    from_header: bool = True  # False: a column the archive fills itself (e.g. transfer syntax)
    tag: int = field(init=False)
    vr: str = field(init=False)

    def __post_init__(self) -> None:
        found = tag_for_keyword(self.keyword)
        if found is None:
            raise ValueError(f"{self.keyword} is not a DICOM keyword")
        tag = int(found)
        object.__setattr__(self, "tag", tag)
        object.__setattr__(self, "vr", dictionary_VR(tag))


def _attrs(level: str, *keywords: str, computed: tuple[str, ...] = ()) -> list[Attribute]:
    out = [Attribute(kw, level, _snake(kw)) for kw in keywords]
    out += [Attribute(kw, level, _snake(kw), computed=True) for kw in computed]
    return out


def _snake(keyword: str) -> str:
    """CamelCase keyword to snake_case column name (SOPInstanceUID → sop_instance_uid)."""
    text = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", keyword)
    return re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", text).lower()


ATTRIBUTES: list[Attribute] = [
    *_attrs(
        "PATIENT",
        "PatientID",
        "PatientName",
        "IssuerOfPatientID",
        "PatientBirthDate",
        "PatientSex",
        computed=(
            "NumberOfPatientRelatedStudies",
            "NumberOfPatientRelatedSeries",
            "NumberOfPatientRelatedInstances",
        ),
    ),
    *_attrs(
        "STUDY",
        "StudyInstanceUID",
        "StudyDate",
        "StudyTime",
        "AccessionNumber",
        "StudyID",
        "StudyDescription",
        "ReferringPhysicianName",
        computed=(
            "ModalitiesInStudy",
            "SOPClassesInStudy",
            "NumberOfStudyRelatedSeries",
            "NumberOfStudyRelatedInstances",
        ),
    ),
    *_attrs(
        "SERIES",
        "SeriesInstanceUID",
        "Modality",
        "SeriesNumber",
        "SeriesDescription",
        "SeriesDate",
        "SeriesTime",
        "BodyPartExamined",
        "PerformedProcedureStepStartDate",
        "PerformedProcedureStepStartTime",
        computed=("NumberOfSeriesRelatedInstances",),
    ),
    *_attrs(
        "IMAGE",
        "SOPInstanceUID",
        "SOPClassUID",
        "InstanceNumber",
        "Rows",
        "Columns",
        "BitsAllocated",
        "NumberOfFrames",
        "ContentDate",
        "ContentTime",
    ),
    # The syntax the instance is stored in (PS3.18 10.6.3.3.3 instance attributes).
    Attribute("AvailableTransferSyntaxUID", "IMAGE", "transfer_syntax_uid", from_header=False),
]

BY_TAG: dict[int, Attribute] = {a.tag: a for a in ATTRIBUTES}
BY_KEYWORD: dict[str, Attribute] = {a.keyword: a for a in ATTRIBUTES}

UNIQUE_KEYS = {
    "PATIENT": "PatientID",
    "STUDY": "StudyInstanceUID",
    "SERIES": "SeriesInstanceUID",
    "IMAGE": "SOPInstanceUID",
}

# Attributes every response at a level carries (PS3.18 10.6.3.3, PS3.4 C.4.1.2.1).
DEFAULT_RETURN = {
    "PATIENT": [
        "PatientName",
        "PatientID",
        "PatientBirthDate",
        "PatientSex",
        "NumberOfPatientRelatedStudies",
    ],
    "STUDY": [
        "StudyDate",
        "StudyTime",
        "AccessionNumber",
        "ModalitiesInStudy",
        "ReferringPhysicianName",
        "PatientName",
        "PatientID",
        "PatientBirthDate",
        "PatientSex",
        "StudyInstanceUID",
        "StudyID",
        "StudyDescription",
        "NumberOfStudyRelatedSeries",
        "NumberOfStudyRelatedInstances",
    ],
    "SERIES": [
        "Modality",
        "SeriesDescription",
        "SeriesInstanceUID",
        "SeriesNumber",
        "SeriesDate",
        "SeriesTime",
        "NumberOfSeriesRelatedInstances",
        "PerformedProcedureStepStartDate",
        "PerformedProcedureStepStartTime",
    ],
    "IMAGE": [
        "SOPClassUID",
        "SOPInstanceUID",
        "InstanceNumber",
        "Rows",
        "Columns",
        "BitsAllocated",
        "NumberOfFrames",
        "AvailableTransferSyntaxUID",
    ],
}


def level_index(level: str) -> int:
    return LEVELS.index(level)


def resolve_tag(key: str) -> int:
    """A tag from a keyword or 8 hex digits (with or without a comma/parentheses)."""
    text = key.strip().strip("()").replace(",", "")
    tag = tag_for_keyword(text)
    if tag is not None:
        return int(tag)
    if len(text) == 8:
        try:
            return int(text, 16)
        except ValueError:
            pass
    raise KeyError(f"unknown attribute {key!r}")


def keyword(tag: int) -> str:
    return keyword_for_tag(tag) or f"{tag:08X}"


# The level of the attributes that are not indexed columns, by the Information Entity
# whose modules hold them (PS3.3 A.1.2; the Query/Retrieve levels of PS3.4 C.6.1.1 and
# C.6.2.1 hold "all other Attributes" of their IE).  An attribute named nowhere here
# (image modules, private elements, …) is of the instance level: a search at a higher
# level neither returns it nor takes it from the first instance (PS3.18 10.6.3.3).
_MODULE_LEVELS: dict[str, tuple[str, ...]] = {
    # Patient (PS3.3 C.7.1.1) and Clinical Trial Subject (C.7.1.3) modules: Patient IE.
    "PATIENT": (
        "IssuerOfPatientIDQualifiersSequence",
        "TypeOfPatientID",
        "PatientBirthTime",
        "PatientBirthDateInAlternativeCalendar",
        "PatientDeathDateInAlternativeCalendar",
        "PatientAlternativeCalendar",
        "OtherPatientIDs",
        "OtherPatientIDsSequence",
        "OtherPatientNames",
        "EthnicGroup",
        "PatientComments",
        "PatientSpeciesDescription",
        "PatientSpeciesCodeSequence",
        "PatientBreedDescription",
        "PatientBreedCodeSequence",
        "BreedRegistrationSequence",
        "StrainDescription",
        "StrainNomenclature",
        "StrainStockSequence",
        "StrainAdditionalInformation",
        "StrainCodeSequence",
        "GeneticModificationsSequence",
        "ResponsiblePerson",
        "ResponsiblePersonRole",
        "ResponsibleOrganization",
        "PatientIdentityRemoved",
        "DeidentificationMethod",
        "DeidentificationMethodCodeSequence",
        "QualityControlSubject",
        "ReferencedPatientSequence",
        "ReferencedPatientPhotoSequence",
        "SourcePatientGroupIdentificationSequence",
        "GroupOfPatientsIdentificationSequence",
        "ClinicalTrialSponsorName",
        "ClinicalTrialProtocolID",
        "ClinicalTrialProtocolName",
        "ClinicalTrialSiteID",
        "ClinicalTrialSiteName",
        "ClinicalTrialSubjectID",
        "ClinicalTrialSubjectReadingID",
        "ClinicalTrialProtocolEthicsCommitteeName",
        "ClinicalTrialProtocolEthicsCommitteeApprovalNumber",
        # SOP Common, but about the encoding of every response (PS3.4 C.4.1.1.3.2).
        "SpecificCharacterSet",
        "TimezoneOffsetFromUTC",
    ),
    # General Study (C.7.2.1), Patient Study (C.7.2.2), Clinical Trial Study (C.7.2.3).
    "STUDY": (
        "ReferringPhysicianIdentificationSequence",
        "ConsultingPhysicianName",
        "ConsultingPhysicianIdentificationSequence",
        "IssuerOfAccessionNumberSequence",
        "PhysiciansOfRecord",
        "PhysiciansOfRecordIdentificationSequence",
        "NameOfPhysiciansReadingStudy",
        "PhysiciansReadingStudyIdentificationSequence",
        "RequestingServiceCodeSequence",
        "ReferencedStudySequence",
        "ProcedureCodeSequence",
        "ReasonForPerformedProcedureCodeSequence",
        "AdmittingDiagnosesDescription",
        "AdmittingDiagnosesCodeSequence",
        "PatientAge",
        "PatientSize",
        "PatientWeight",
        "PatientBodyMassIndex",
        "MeasuredAPDimension",
        "MeasuredLateralDimension",
        "PatientSizeCodeSequence",
        "MedicalAlerts",
        "Allergies",
        "SmokingStatus",
        "PregnancyStatus",
        "LastMenstrualDate",
        "PatientState",
        "Occupation",
        "AdditionalPatientHistory",
        "AdmissionID",
        "IssuerOfAdmissionIDSequence",
        "ServiceEpisodeID",
        "IssuerOfServiceEpisodeIDSequence",
        "ServiceEpisodeDescription",
        "PatientSexNeutered",
        "ReasonForVisit",
        "ReasonForVisitCodeSequence",
        "ClinicalTrialTimePointID",
        "ClinicalTrialTimePointDescription",
        "LongitudinalTemporalOffsetFromEvent",
        "LongitudinalTemporalEventType",
        "ConsentForClinicalTrialUseSequence",
    ),
    # General Series (C.7.3.1), Clinical Trial Series (C.7.3.2) and General Equipment
    # (C.7.5.1: the Equipment IE, one per series, PS3.3 A.1.2.4).
    "SERIES": (
        "Laterality",
        "PerformingPhysicianName",
        "PerformingPhysicianIdentificationSequence",
        "ProtocolName",
        "SeriesDescriptionCodeSequence",
        "OperatorsName",
        "OperatorIdentificationSequence",
        "ReferencedPerformedProcedureStepSequence",
        "RelatedSeriesSequence",
        "PatientPosition",
        "SmallestPixelValueInSeries",
        "LargestPixelValueInSeries",
        "RequestAttributesSequence",
        "PerformedProcedureStepID",
        "PerformedProcedureStepEndDate",
        "PerformedProcedureStepEndTime",
        "PerformedProcedureStepDescription",
        "PerformedProtocolCodeSequence",
        "CommentsOnThePerformedProcedureStep",
        "AnatomicalOrientationType",
        "TreatmentSessionUID",
        "ClinicalTrialCoordinatingCenterName",
        "ClinicalTrialSeriesID",
        "ClinicalTrialSeriesDescription",
        "Manufacturer",
        "InstitutionName",
        "InstitutionAddress",
        "StationName",
        "InstitutionalDepartmentName",
        "InstitutionalDepartmentTypeCodeSequence",
        "ManufacturerModelName",
        "DeviceSerialNumber",
        "DeviceUID",
        "SoftwareVersions",
        "GantryID",
        "UDISequence",
        "SpatialResolution",
        "DateOfLastCalibration",
        "TimeOfLastCalibration",
        "PixelPaddingValue",
    ),
}
_LEVEL_BY_TAG: dict[int, str] = {
    Attribute(kw, level, "").tag: level for level, kws in _MODULE_LEVELS.items() for kw in kws
}


def level_of(tag: int) -> str:
    """The Query/Retrieve level an attribute belongs to: its column's, else the level
    of the IE whose module holds it (`_MODULE_LEVELS`), else IMAGE."""
    attr = BY_TAG.get(tag)
    if attr is not None:
        return attr.level
    return _LEVEL_BY_TAG.get(tag, "IMAGE")
