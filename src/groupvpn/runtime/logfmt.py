"""One log line per significant event, as ``key=value`` so syslog users can filter.

No event carries key material, and peer-supplied text is escaped where the
event is built, so any event can be logged as it is.

The daemons start each event's line with ``event=NAME`` (:func:`tagged`), the
event's kind in a fixed vocabulary (docs/operations.md), so ``grep event=rekey-sent``
or a logfmt parser finds every line of one kind whatever its wording; ``group=``
and ``peer=`` follow in the lines that concern a group or a peer.
"""

from __future__ import annotations

import logging
import re

from groupvpn.ike.events import (
    IkeSaDeleted,
    IkeSaEstablished,
    IkeSaFailed,
    InternalError,
    NotifyReceived,
    PacketDropped,
)
from groupvpn.member.core import Registered, RegistrationFailed
from groupvpn.server.core import MemberRegistered, RegistrationDropped, RegistrationRefused
from groupvpn.wire.constants import notify_name


def describe_event(event: object) -> tuple[int, str]:
    """The log level and line for an event of any core."""
    if isinstance(event, IkeSaEstablished):
        sa = event.sa
        return logging.INFO, (
            f"IKE SA up: peer={sa.peer[0]}:{sa.peer[1]} gateway={sa.gateway} role={sa.role} "
            f"mode={sa.mode} encryption={sa.encryption} hash={sa.hash} "
            f"dh-group=group{sa.dh_group} lifetime={sa.lifetime_seconds}s cookies={sa.cookies} "
            f"local-id={sa.local_identity} remote-id={sa.remote_identity}"
        )
    if isinstance(event, IkeSaDeleted):
        sa = event.sa
        return logging.INFO, (
            f"IKE SA down: peer={sa.peer[0]}:{sa.peer[1]} gateway={sa.gateway} "
            f"reason={event.reason} cookies={sa.cookies}"
        )
    if isinstance(event, IkeSaFailed):
        notify = f" notify={notify_name(event.notify)}" if event.notify is not None else ""
        return logging.WARNING, (
            f"IKE SA failed: peer={event.peer[0]}:{event.peer[1]} gateway={event.gateway} "
            f"role={event.role} mode={event.mode}{notify} reason={event.reason}"
        )
    if isinstance(event, NotifyReceived):
        kind = "protected" if event.protected else "unprotected"
        return logging.INFO, (
            f"notify received: peer={event.peer[0]}:{event.peer[1]} "
            f"type={notify_name(event.notify_type)} {kind}"
        )
    if isinstance(event, PacketDropped):
        return logging.INFO, (
            f"packet dropped: peer={event.peer[0]}:{event.peer[1]} reason={event.reason}"
        )
    if isinstance(event, MemberRegistered):
        m = event.member
        return logging.INFO, (
            f"member registered: group={m.group} group-id={m.group_id} peer={m.address} "
            f"gateway={m.gateway}"
            + ("" if m.sender_id is None else f" sender-id={m.sender_id.value}")
        )
    if isinstance(event, RegistrationRefused):
        notify = f" notify={notify_name(event.notify)}" if event.notify is not None else ""
        return logging.WARNING, (
            f"registration refused: peer={event.peer[0]} gateway={event.gateway}{notify} "
            f"reason={event.reason}"
        )
    if isinstance(event, RegistrationDropped):
        return logging.INFO, f"packet dropped: peer={event.peer[0]} reason={event.reason}"
    if isinstance(event, Registered):
        r = event.registration
        kek = "yes" if r.sa.kek is not None else "no"
        text = f"registered: vpn={event.vpn} group-id={r.group_id} teks={len(r.sa.teks)} kek={kek}"
        if r.sender_ids_requested:
            # AES-GCM sends only with a sender ID (docs/dataplane.md §4).
            if event.sender_id is None:
                return logging.WARNING, (
                    f"{text} sender-id=none (the key server sent none: AES-GCM keys "
                    f"decrypt but never encrypt)"
                )
            text += f" sender-id={event.sender_id.value}"
        return logging.INFO, text
    if isinstance(event, RegistrationFailed):
        return logging.WARNING, (
            f"registration failed: vpn={event.vpn} retry-in={event.retry_in:.1f}s "
            f"reason={event.reason}"
        )
    if isinstance(event, InternalError):
        return logging.ERROR, f"internal error ({event.where}), please report:\n{event.detail}"
    return logging.INFO, f"event: {event!r}"


#: Where an event class's name would not say what happened to an operator.
_EVENT_NAMES = {"MemberInactive": "member-removed"}


#: Event class -> its name, worked out once per class: a big group's rekey brings
#: thousands of ACK events at once.  Bounded by the number of event classes.
_NAMES_BY_CLASS: dict[type, str] = {}


def event_name(event: object) -> str:
    """``RekeySent`` -> ``rekey-sent``: the ``event=`` value of the event's log line."""
    kind = type(event)
    name = _NAMES_BY_CLASS.get(kind)
    if name is None:
        title = kind.__name__
        name = _EVENT_NAMES.get(title) or re.sub(r"(?<!^)(?=[A-Z])", "-", title).lower()
        _NAMES_BY_CLASS[kind] = name
    return name


def tagged(event: object, line: str) -> str:
    """The log line of ``event`` as the daemons write it: ``event=NAME`` first."""
    return f"event={event_name(event)} {line}"
