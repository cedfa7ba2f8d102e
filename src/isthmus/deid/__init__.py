"""De-identification: PS3.15 Annex E, the Basic Application Level Confidentiality Profile.

Below the archive (like `isthmus.render`): it transforms data sets and knows nothing of
where they are stored.  The archive gives each project its pseudonym key
(`Archive.deidentifier`), so doors and exports reach it through the archive.
"""

from isthmus.deid.options import DeidentificationOptions, DeidentificationOptionsError
from isthmus.deid.pixels import PixelRule, PixelRuleError
from isthmus.deid.profile import Deidentifier, Excluded, encode

__all__ = [
    "Deidentifier",
    "Excluded",
    "DeidentificationOptions",
    "DeidentificationOptionsError",
    "PixelRule",
    "PixelRuleError",
    "encode",
]
