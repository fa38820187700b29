"""Events the IKE core reports to its shell.

The core never logs, sleeps or sends by itself: everything the outside world
needs to know comes out of :meth:`IkeEndpoint.next_event` as one of these.
They carry no key material, so a shell may log any of them as they are.
"""

from __future__ import annotations

from dataclasses import dataclass

Address = tuple[str, int]


@dataclass(frozen=True, slots=True)
class IkeSaInfo:
    """What an operator may see about an IKE SA (``show … ike security-associations``)."""

    initiator_cookie: bytes
    responder_cookie: bytes
    peer: Address
    gateway: str
    role: str  # "initiator" | "responder"
    mode: str  # "main" | "aggressive"
    encryption: str  # Junos names: "aes-128-cbc", ...
    hash: str  # "sha1", ...
    dh_group: int
    lifetime_seconds: int
    established_at: float
    local_identity: str
    remote_identity: str

    @property
    def cookies(self) -> str:
        return f"{self.initiator_cookie.hex()}:{self.responder_cookie.hex()}"


@dataclass(frozen=True, slots=True)
class IkeSaEstablished:
    sa: IkeSaInfo


@dataclass(frozen=True, slots=True)
class IkeSaFailed:
    """A negotiation that did not complete; ``notify`` is the Notify type involved, if any."""

    peer: Address
    gateway: str
    role: str
    mode: str
    reason: str
    notify: int | None = None


@dataclass(frozen=True, slots=True)
class IkeSaDeleted:
    sa: IkeSaInfo
    reason: str
    by_peer: bool


@dataclass(frozen=True, slots=True)
class NotifyReceived:
    peer: Address
    notify_type: int
    protected: bool
    #: Notification Data (never key material); our key server puts the refused
    #: GROUPKEY-PULL's message ID here so the member knows which registration failed.
    data: bytes = b""


@dataclass(frozen=True, slots=True)
class PacketDropped:
    """A datagram that changed nothing.  ``reason`` is short and stable enough to count."""

    peer: Address
    reason: str


@dataclass(frozen=True, slots=True)
class InternalError:
    """A bug caught at the core's boundary; the core carries on.  ``detail`` is a traceback."""

    where: str
    detail: str


IkeEvent = (
    IkeSaEstablished | IkeSaFailed | IkeSaDeleted | NotifyReceived | PacketDropped | InternalError
)
