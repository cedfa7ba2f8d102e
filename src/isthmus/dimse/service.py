"""The service table: which DIMSE services the acceptor serves, and what a service sees.

A DIMSE request names its operation in Command Field (0000,0100) (PS3.7 9.3 for
the DIMSE-C services, 10.3 for DIMSE-N), and the presentation context it comes on
names the SOP class (PS3.7 9.1.1, PS3.8 7.1.1.13).  The acceptor looks both up in
a `ServiceTable` that the node builds (dimse/scp.py): one `Service` per command
field, with the SOP classes it serves and the transfer syntaxes it accepts for
them, so negotiation and dispatch follow the same table and adding N-CREATE
(e.g. for UPS) is one more entry.  Every handler has one signature,
`handler(channel, message)`: it answers through the channel, which is the
association (the acceptor) seen through `Channel`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from isthmus.archive import Activity, Transfer
from isthmus.dimse import messages as msg


@dataclass
class Message:
    """A complete DIMSE message: command set, and the dataset bytes if any."""

    context_id: int
    command: msg.Command
    dataset: memoryview | None

    @property
    def field(self) -> int:
        return msg.us(self.command, msg.COMMAND_FIELD)

    @property
    def message_id(self) -> int:
        return msg.us(self.command, msg.MESSAGE_ID)

    def require_dataset(self) -> memoryview:
        """The data set of a request that carries one (the table checked: needs_dataset)."""
        if self.dataset is None:
            raise ValueError("the request carries no data set")
        return self.dataset


def audit_query(
    channel: Channel,
    message: Message,
    query: str,
    outcome: int = 0,
    description: str | None = None,
) -> None:
    """Tell the audit trail of a C-FIND received (PS3.15 A.5.3.10 Query: every query,
    Modality Worklist and UPS ones too), with its SOP class and identifier."""
    channel.activity.audit(
        "query",
        outcome=outcome,
        description=description,
        door="dimse",
        user=channel.calling_aet,
        address=channel.address,
        local=channel.called_aet,
        sop_class=channel.abstract_syntax(message),
        query=query,
    )


class Channel(Protocol):
    """What a service may do with the association its request came on."""

    calling_aet: str
    address: str
    activity: Activity  # where services tell what they did (queries: audit trail)

    @property
    def called_aet(self) -> str:
        """The AE title the requestor called (ours)."""
        ...

    def transfer(self, event: str, peer: str = "") -> Transfer:
        """The association's tally of instances stored ("stored") or sent
        ("transferred", to `peer` for C-MOVE), told when the association ends."""
        ...

    def transfer_syntax(self, message: Message) -> str:
        """The transfer syntax of the presentation context `message` came on."""
        ...

    def abstract_syntax(self, message: Message) -> str:
        """The SOP class of the presentation context `message` came on."""
        ...

    def respond(
        self,
        message: Message,
        field_: int,
        status: int,
        dataset: bytes | None = None,
        comment: str | None = None,
        extra: dict[int, Any] | None = None,
    ) -> None:
        """Send a response to `message` (PS3.7 9.3)."""
        ...

    def context_for(self, sop_class: str) -> int | None:
        """An accepted presentation context of `sop_class` on this association, or None."""
        ...

    def event_report(
        self,
        context_id: int,
        sop_class: str,
        sop_instance: str,
        event_type: int,
        dataset: bytes | None,
    ) -> int | None:
        """N-EVENT-REPORT to the requestor on this association (PS3.7 10.1.1); the status
        of its response, or None if the association can no longer carry it."""
        ...

    def cancelled(self, message: Message) -> bool:
        """Has the requestor sent C-CANCEL-RQ for `message` (PS3.7 9.3.2.3)?"""
        ...

    def storage_syntaxes(self, sop_class: str) -> dict[str, int]:
        """Transfer syntax → context id for C-STORE sub-operations to the requestor."""
        ...

    def store_to_requestor(
        self, context_id: int, sop_class: str, sop_instance: str, dataset: bytes | memoryview
    ) -> int:
        """A C-STORE sub-operation on this association (C-GET); returns its status."""
        ...


ServiceHandler = Callable[[Channel, Message], None]


@dataclass(frozen=True)
class Service:
    """One DIMSE operation of the node on a set of SOP classes."""

    name: str  # "C-STORE", for logs and status meanings (isthmus.dicom.status)
    sop_classes: frozenset[str]
    transfer_syntaxes: tuple[str, ...]  # accepted for these SOP classes, preferred first
    handler: ServiceHandler
    needs_dataset: bool = True  # the request carries a data set (PS3.7 9.3: identifier, ...)


class ServiceTable:
    """The node's DIMSE services by command field (PS3.7 E.1-1 Command Field values)."""

    def __init__(
        self, services: Mapping[int, Service], scp_role_classes: Iterable[str] = ()
    ) -> None:
        self.services = dict(services)
        # SOP classes whose SCP role we take when the requestor proposes it (PS3.7
        # D.3.3.4): the storage classes, for C-STORE sub-operations of a C-GET.
        self.scp_role_classes = frozenset(scp_role_classes)
        self._syntaxes: dict[str, tuple[str, ...]] = {}
        for service in self.services.values():
            for sop_class in service.sop_classes:
                known = self._syntaxes.get(sop_class, ())
                self._syntaxes[sop_class] = tuple(
                    dict.fromkeys((*known, *service.transfer_syntaxes))
                )

    def transfer_syntaxes(self, sop_class: str) -> tuple[str, ...]:
        """What we accept on a presentation context for `sop_class`; () if no service
        serves it (its context is refused: abstract syntax not supported, PS3.8 9.3.3.2)."""
        return self._syntaxes.get(sop_class, ())

    def service_for(self, message: Message, sop_class: str) -> Service | None:
        """The service for `message` on a context of `sop_class`, or None when it is an
        operation we do not serve there (answered "unrecognized operation")."""
        service = self.services.get(message.field)
        if service is None or sop_class not in service.sop_classes:
            return None
        if service.needs_dataset and message.dataset is None:
            return None
        return service


def by_sop_class(
    name: str, handlers: Mapping[str, ServiceHandler], transfer_syntaxes: tuple[str, ...]
) -> Service:
    """One command field served by several SOP classes' handlers (N-CREATE for MPPS and
    UPS, N-ACTION for Storage Commitment and UPS): the context's SOP class picks one.
    The handlers check for their data set (PS3.7 10.3: it is optional for some)."""
    table = dict(handlers)

    def handler(channel: Channel, message: Message) -> None:
        table[channel.abstract_syntax(message)](channel, message)

    return Service(name, frozenset(table), transfer_syntaxes, handler, needs_dataset=False)
