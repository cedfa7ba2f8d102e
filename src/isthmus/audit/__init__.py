"""The audit trail (PS3.15 A.5): audit events of the doors as DICOM audit messages.

Doors publish ``audit.*`` events (isthmus.archive.activity); `AuditTrail` logs them
(logfile.py) and sends them to a syslog collector (syslog.py); `search` reads the log
for `isthmus audit` and ``GET /api/audit``.  Sits beside isthmus.node: below the doors,
above the archive; it imports no door.
"""

from isthmus.audit.logfile import AuditLog, Filter, search
from isthmus.audit.message import Record, records
from isthmus.audit.trail import AuditTrail

__all__ = ["AuditLog", "AuditTrail", "Filter", "Record", "records", "search"]
