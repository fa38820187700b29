"""Phase 1 policy as the IKE core sees it, and proposal negotiation.

The configuration layer speaks Junos (``proposal``, ``policy``, ``gateway``);
the core needs only what goes on the wire.  :class:`Phase1Peer` is that
reduction for one IKE gateway, and the functions here turn proposals into SA
payloads and back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address

from groupvpn.crypto.ciphers import CipherSuite, cipher_from_ike
from groupvpn.crypto.dh import MODP_GROUPS, DhGroup
from groupvpn.crypto.hashes import HashAlgorithm, hash_from_ike
from groupvpn.wire.attributes import DataAttribute
from groupvpn.wire.constants import (
    KEY_IKE,
    Doi,
    IkeAttribute,
    IkeAuthMethod,
    LifeType,
    NotifyType,
    ProtocolId,
)
from groupvpn.wire.payloads import IdPayload, Proposal, SaPayload, Transform


@dataclass(frozen=True, slots=True)
class Phase1Proposal:
    """One acceptable combination of algorithms (pre-shared keys only, for now)."""

    encryption: CipherSuite
    hash: HashAlgorithm
    dh_group: DhGroup
    lifetime_seconds: int

    def describe(self) -> str:
        return f"{self.encryption.name}/{self.hash.name}/group{self.dh_group.number}"

    def same_algorithms(self, other: Phase1Proposal) -> bool:
        return (
            self.encryption == other.encryption
            and self.hash == other.hash
            and self.dh_group == other.dh_group
        )


@dataclass(frozen=True, slots=True)
class Phase1Peer:
    """Everything the core needs to negotiate with one configured gateway."""

    gateway: str
    addresses: tuple[IPv4Address, ...]
    mode: str  # "main" | "aggressive"
    proposals: tuple[Phase1Proposal, ...]
    pre_shared_key: bytes = field(repr=False)
    local_identity: IdPayload | None = None  # None: our IPv4 address
    remote_identity: IdPayload | None = None  # None: the peer's IPv4 address
    #: DOI in the phase 1 SA we send.  RFC 6407 §2.1 says GDOI (2); the IPsec DOI (1)
    #: lets tshark decrypt the exchange and suits peers that reject DOI 2.
    doi: int = Doi.GDOI


def transform_for(number: int, proposal: Phase1Proposal) -> Transform:
    """The phase 1 transform that offers ``proposal`` (RFC 2409 Appendix A attributes)."""
    attributes = [
        DataAttribute.basic(IkeAttribute.ENCRYPTION_ALGORITHM, proposal.encryption.ike_id)
    ]
    if proposal.encryption.ike_key_length_bits is not None:
        attributes.append(
            DataAttribute.basic(IkeAttribute.KEY_LENGTH, proposal.encryption.ike_key_length_bits)
        )
    attributes += [
        DataAttribute.basic(IkeAttribute.HASH_ALGORITHM, proposal.hash.ike_id),
        DataAttribute.basic(IkeAttribute.AUTHENTICATION_METHOD, IkeAuthMethod.PRE_SHARED_KEY),
        DataAttribute.basic(IkeAttribute.GROUP_DESCRIPTION, proposal.dh_group.number),
        DataAttribute.basic(IkeAttribute.LIFE_TYPE, LifeType.SECONDS),
        DataAttribute.basic_or_variable(IkeAttribute.LIFE_DURATION, proposal.lifetime_seconds),
    ]
    return Transform(number, KEY_IKE, tuple(attributes))


def sa_offer(peer: Phase1Peer) -> SaPayload:
    """Our initiator SA: one ISAKMP proposal whose transforms are the alternatives in order."""
    transforms = tuple(
        transform_for(index + 1, proposal) for index, proposal in enumerate(peer.proposals)
    )
    return SaPayload(peer.doi, 0, (Proposal(1, ProtocolId.ISAKMP, b"", transforms),))


class UnacceptableTransform(Exception):
    """A transform we cannot use; the message says why (for logs, never for the wire)."""


def proposal_from_transform(transform: Transform) -> Phase1Proposal:
    """Read a received phase 1 transform; raise UnacceptableTransform if we cannot use it."""
    if transform.transform_id != KEY_IKE:
        raise UnacceptableTransform(f"transform id {transform.transform_id} is not KEY_IKE")
    values: dict[int, int] = {}
    lifetime: int | None = None
    life_type: int | None = None
    for attribute in transform.attributes:
        if attribute.type == IkeAttribute.LIFE_TYPE:
            life_type = attribute.as_int()
        elif attribute.type == IkeAttribute.LIFE_DURATION:
            # Life durations follow their life type and may repeat (seconds, kilobytes).
            if life_type == LifeType.SECONDS:
                lifetime = attribute.as_int()
        elif attribute.type in values:
            raise UnacceptableTransform(f"attribute {attribute.type} appears twice")
        elif attribute.type in _UNDERSTOOD:
            values[attribute.type] = attribute.as_int()
        else:
            raise UnacceptableTransform(f"attribute type {attribute.type} is not supported")
    auth = values.get(IkeAttribute.AUTHENTICATION_METHOD)
    if auth != IkeAuthMethod.PRE_SHARED_KEY:
        raise UnacceptableTransform(f"authentication method {auth} is not pre-shared keys")
    encryption = cipher_from_ike(
        values.get(IkeAttribute.ENCRYPTION_ALGORITHM, 0), values.get(IkeAttribute.KEY_LENGTH)
    )
    if encryption is None:
        raise UnacceptableTransform("encryption algorithm or key length not supported")
    hash_alg = hash_from_ike(values.get(IkeAttribute.HASH_ALGORITHM, 0))
    if hash_alg is None:
        raise UnacceptableTransform("hash algorithm not supported")
    group = MODP_GROUPS.get(values.get(IkeAttribute.GROUP_DESCRIPTION, 0))
    if group is None:
        raise UnacceptableTransform("Diffie-Hellman group not supported")
    if IkeAttribute.PRF in values:
        raise UnacceptableTransform("a negotiated PRF is not supported")
    # RFC 2407 §4.5: no lifetime means the default of 28800 seconds.
    return Phase1Proposal(encryption, hash_alg, group, lifetime or 28800)


_UNDERSTOOD = frozenset(
    {
        IkeAttribute.ENCRYPTION_ALGORITHM,
        IkeAttribute.HASH_ALGORITHM,
        IkeAttribute.AUTHENTICATION_METHOD,
        IkeAttribute.GROUP_DESCRIPTION,
        IkeAttribute.KEY_LENGTH,
        IkeAttribute.PRF,
    }
)


@dataclass(frozen=True, slots=True)
class Selection:
    """The responder's choice: what to echo back and what was agreed."""

    proposal_number: int
    transform: Transform
    agreed: Phase1Proposal


def select_proposal(offer: SaPayload, acceptable: tuple[Phase1Proposal, ...]) -> Selection | None:
    """Pick the first offered transform, in the initiator's order, that we accept.

    Lifetimes do not take part in matching: the SA lives for the shorter of the
    offered and the configured lifetime, as Junos does.
    """
    for proposal in offer.proposals:
        if proposal.protocol_id != ProtocolId.ISAKMP:
            continue
        for transform in proposal.transforms:
            try:
                offered = proposal_from_transform(transform)
            except UnacceptableTransform:
                continue
            for ours in acceptable:
                if ours.same_algorithms(offered):
                    lifetime = min(ours.lifetime_seconds, offered.lifetime_seconds)
                    agreed = Phase1Proposal(
                        offered.encryption, offered.hash, offered.dh_group, lifetime
                    )
                    return Selection(proposal.number, transform, agreed)
    return None


def sa_answer(offer: SaPayload, selection: Selection) -> SaPayload:
    """The responder's SA: the chosen transform, unchanged, in its proposal (RFC 2408 §4.2)."""
    chosen = Proposal(selection.proposal_number, ProtocolId.ISAKMP, b"", (selection.transform,))
    return SaPayload(offer.doi, offer.situation, (chosen,))


def check_answer(answer: SaPayload, offered: tuple[Phase1Proposal, ...]) -> Phase1Proposal:
    """Validate the responder's SA against what we offered; raise UnacceptableTransform."""
    if len(answer.proposals) != 1 or len(answer.proposals[0].transforms) != 1:
        raise UnacceptableTransform("responder must return exactly one proposal and transform")
    if answer.proposals[0].protocol_id != ProtocolId.ISAKMP:
        raise UnacceptableTransform("responder chose a proposal that is not ISAKMP")
    # strongSwan answers DOI 1 to a DOI 2 offer (lab/REPORT.md); accept either.
    if answer.doi not in (Doi.IPSEC, Doi.GDOI):
        raise UnacceptableTransform(f"responder SA has DOI {answer.doi}")
    chosen = proposal_from_transform(answer.proposals[0].transforms[0])
    for ours in offered:
        if ours.same_algorithms(chosen):
            lifetime = min(ours.lifetime_seconds, chosen.lifetime_seconds)
            return Phase1Proposal(chosen.encryption, chosen.hash, chosen.dh_group, lifetime)
    raise UnacceptableTransform(f"responder chose {chosen.describe()}, which we did not offer")


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a responder will not take a first message, and the Notify to answer with."""

    reason: str
    notify: int


def admit_offer(peer: Phase1Peer, offer: SaPayload) -> Selection | Refusal:
    """The responder's decision on an offered phase 1 SA from a configured gateway."""
    if offer.doi not in (Doi.IPSEC, Doi.GDOI):
        return Refusal(f"SA DOI {offer.doi} not supported", NotifyType.DOI_NOT_SUPPORTED)
    if offer.situation not in (0, 1):  # none (GDOI) or SIT_IDENTITY_ONLY (IPsec DOI)
        return Refusal(
            f"SA situation {offer.situation} not supported", NotifyType.SITUATION_NOT_SUPPORTED
        )
    selection = select_proposal(offer, peer.proposals)
    if selection is None:
        configured = ", ".join(p.describe() for p in peer.proposals)
        return Refusal(
            f"no acceptable proposal (we accept {configured})", NotifyType.NO_PROPOSAL_CHOSEN
        )
    return selection
