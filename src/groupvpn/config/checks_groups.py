"""Commit checks of the Group VPN groups: server groups and IPsec proposals, member VPNs.

Rule tables as in :mod:`groupvpn.config.checks`: per server group, per member VPN, and
per role as a whole.  Every rule yields diagnostics and never raises.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from ipaddress import IPv4Network

from groupvpn.config.diagnostics import MISSING_MANDATORY, Diagnostic, quote_word
from groupvpn.config.model_groups import (
    COMBINED_ENCRYPTION_ALGORITHMS,
    LIFETIME_PER_ACTIVATION_DELAY,
)
from groupvpn.config.parser import ParsedConfig
from groupvpn.config.tree import Node

GATEWAY_NOT_DEFINED = (
    "Referenced IKE gateway must be defined under [edit security group-vpn {role} ike gateway]"
)
PROPOSAL_NOT_DEFINED = "Referenced proposal is not defined"
GROUP_ID_NOT_UNIQUE = "Group id must be unique among groups"
VPN_GROUP_NOT_UNIQUE = "Group id must be unique among group vpns"
IDENTICAL_GROUP_POLICIES = (
    "Identical group policies are not allowed in a group: same source, destination, "
    "ports and protocol as match-policy {policy} (ipsec-sa {sa})"
)
LIFETIME_TOO_SHORT = (
    "{what} lifetime ({lifetime} seconds) must be at least "
    f"{LIFETIME_PER_ACTIVATION_DELAY} times activation-time-delay ({{delay}} seconds)"
)
MULTICAST_GROUP_NEEDED = "Multicast group must be defined for communication-type multicast"
MULTICAST_INTERFACE_NEEDED = (
    "Multicast outgoing interface must be defined for communication-type multicast"
)
INTERFACE_NOT_CONFIGURED = (
    "Referenced interface must be configured under [edit interfaces] hierarchy"
)
AUTHENTICATION_WITH_COMBINED_MODE = (
    "Authentication algorithm must not be configured with encryption-algorithm {cipher}"
)


@dataclass(frozen=True, slots=True)
class RoleScope:
    """What a rule sees: the whole parse and the role's level (``server`` or ``member``)."""

    parsed: ParsedConfig
    role: str
    level: Node

    def diag(self, node: Node, statement: str | None, message: str, line: int) -> Diagnostic:
        return Diagnostic(self.parsed.source, line, message, node.path, statement)

    def gateways(self) -> dict[str, Node]:
        ike = self.level.container("ike")
        return ike.objects("gateway") if ike is not None else {}


Rule = Callable[[RoleScope, Node], Iterable[Diagnostic]]


# -- server group rules ---------------------------------------------------------------------


def group_gateways_defined(scope: RoleScope, group: Node) -> Iterator[Diagnostic]:
    defined = scope.gateways()
    for setting in group.lists.get("ike-gateway", []):
        if setting.value not in defined:
            message = GATEWAY_NOT_DEFINED.format(role="server")
            yield scope.diag(group, setting.shown, message, setting.line)


def _proposals(scope: RoleScope) -> dict[str, Node]:
    ipsec = scope.level.container("ipsec")
    return ipsec.objects("proposal") if ipsec is not None else {}


def sa_proposals_defined(scope: RoleScope, group: Node) -> Iterator[Diagnostic]:
    defined = _proposals(scope)
    for sa in group.objects("ipsec-sa").values():
        setting = sa.leaves.get("proposal")
        if setting is not None and setting.value not in defined:
            yield scope.diag(sa, setting.shown, PROPOSAL_NOT_DEFINED, setting.line)


def _selector(policy: Node) -> tuple[object, ...] | None:
    if not isinstance(policy.value("source"), IPv4Network):
        return None
    if not isinstance(policy.value("destination"), IPv4Network):
        return None
    keywords = ("source", "destination", "source-port", "destination-port", "protocol")
    return tuple(policy.value(k) for k in keywords)


def no_identical_group_policies(scope: RoleScope, group: Node) -> Iterator[Diagnostic]:
    """The spec: identical group policies cannot exist in one group (across its SAs)."""
    seen: dict[tuple[object, ...], tuple[str, str]] = {}
    for sa_name, sa in group.objects("ipsec-sa").items():
        for name, policy in sa.objects("match-policy").items():
            selector = _selector(policy)
            if selector is None:
                continue
            first = seen.setdefault(selector, (name, sa_name))
            if first != (name, sa_name):
                message = IDENTICAL_GROUP_POLICIES.format(
                    policy=quote_word(first[0]), sa=quote_word(first[1])
                )
                yield Diagnostic(
                    scope.parsed.source, policy.line, message, sa.path, policy.statement
                )


def lifetimes_cover_activation_delay(scope: RoleScope, group: Node) -> Iterator[Diagnostic]:
    """The spec: IPsec and KEK lifetimes are at least 10 x activation-time-delay."""
    delay = group.value("activation-time-delay")
    assert isinstance(delay, int)
    minimum = LIFETIME_PER_ACTIVATION_DELAY * delay
    proposals = _proposals(scope)
    for sa in group.objects("ipsec-sa").values():
        setting = sa.leaves.get("proposal")
        proposal = proposals.get(str(setting.value)) if setting is not None else None
        if setting is None or proposal is None:
            continue
        lifetime = proposal.value("lifetime-seconds")
        if isinstance(lifetime, int) and lifetime < minimum:
            what = f"IPsec proposal {quote_word(proposal.name or '')}"
            message = LIFETIME_TOO_SHORT.format(what=what, lifetime=lifetime, delay=delay)
            yield scope.diag(sa, setting.shown, message, setting.line)
    smc = group.container("server-member-communication")
    if smc is not None:
        lifetime = smc.value("lifetime-seconds")
        if isinstance(lifetime, int) and lifetime < minimum:
            what = "Server-member communication"
            message = LIFETIME_TOO_SHORT.format(what=what, lifetime=lifetime, delay=delay)
            line = smc.line_of("lifetime-seconds")
            yield scope.diag(smc, "lifetime-seconds", message, line)


def multicast_needs_group_and_interface(scope: RoleScope, group: Node) -> Iterator[Diagnostic]:
    smc = group.container("server-member-communication")
    if smc is None or smc.value("communication-type") != "multicast":
        return
    setting = smc.leaves["communication-type"]
    for keyword, message in (
        ("multicast-group", MULTICAST_GROUP_NEEDED),
        ("multicast-outgoing-interface", MULTICAST_INTERFACE_NEEDED),
    ):
        if not smc.has(keyword) and (*smc.path, keyword) not in scope.parsed.failed:
            yield scope.diag(smc, setting.shown, message, setting.line)


def multicast_interface_configured(scope: RoleScope, group: Node) -> Iterator[Diagnostic]:
    smc = group.container("server-member-communication")
    if smc is not None:
        yield from _interface_configured(scope, smc, "multicast-outgoing-interface")


# -- server ipsec proposal rules ------------------------------------------------------------


def proposal_authentication(scope: RoleScope, proposal: Node) -> Iterator[Diagnostic]:
    """`authentication-algorithm`: mandatory with a CBC cipher, refused with AES-GCM.

    AES-GCM authenticates what it encrypts (RFC 4106); as in `[edit security ipsec
    proposal]`, it takes no separate authentication algorithm.
    """
    cipher = proposal.value("encryption-algorithm")
    if cipher is None:
        return  # missing (the schema says so) or rejected (the parser did)
    setting = proposal.leaves.get("authentication-algorithm")
    if cipher in COMBINED_ENCRYPTION_ALGORITHMS:
        if setting is not None:
            message = AUTHENTICATION_WITH_COMBINED_MODE.format(cipher=cipher)
            yield scope.diag(proposal, setting.shown, message, setting.line)
        return
    if setting is None and (*proposal.path, "authentication-algorithm") not in scope.parsed.failed:
        # Worded and placed as the schema's own mandatory-statement check.
        yield Diagnostic(
            scope.parsed.source,
            proposal.line,
            MISSING_MANDATORY.format(keyword="authentication-algorithm"),
            proposal.path[:-2],
            proposal.statement,
            missing_mandatory=True,
        )


# -- member vpn rules -----------------------------------------------------------------------


def vpn_gateway_defined(scope: RoleScope, vpn: Node) -> Iterator[Diagnostic]:
    setting = vpn.leaves.get("ike-gateway")
    if setting is not None and setting.value not in scope.gateways():
        message = GATEWAY_NOT_DEFINED.format(role="member")
        yield scope.diag(vpn, setting.shown, message, setting.line)


def external_interface_configured(scope: RoleScope, vpn: Node) -> Iterator[Diagnostic]:
    yield from _interface_configured(scope, vpn, "group-vpn-external-interface")


def _interface_configured(scope: RoleScope, node: Node, keyword: str) -> Iterator[Diagnostic]:
    setting = node.leaves.get(keyword)
    if setting is None:
        return
    if not interface_configured(scope.parsed.root, str(setting.value)):
        yield scope.diag(node, setting.shown, INTERFACE_NOT_CONFIGURED, setting.line)


def interface_configured(root: Node, name: str) -> bool:
    """Whether ``ge-0/0/1.0`` (an interface and unit) or ``ge-0/0/1`` is configured."""
    physical, dot, unit = name.partition(".")
    interface = root.objects("interfaces").get(physical)
    if interface is None:
        return False
    if not dot:
        return True
    return any(int(number) == int(unit) for number in interface.objects("unit"))


# -- whole-role rules -----------------------------------------------------------------------


def _unique(
    scope: RoleScope, objects: dict[str, Node], keyword: str, message: str
) -> Iterator[Diagnostic]:
    seen: set[object] = set()
    for node in objects.values():
        setting = node.leaves.get(keyword)
        if setting is None:
            continue
        if setting.value in seen:
            yield scope.diag(node, setting.shown, message, setting.line)
        seen.add(setting.value)


def unique_group_ids(scope: RoleScope) -> Iterator[Diagnostic]:
    yield from _unique(scope, scope.level.objects("group"), "group-id", GROUP_ID_NOT_UNIQUE)


def unique_vpn_groups(scope: RoleScope) -> Iterator[Diagnostic]:
    ipsec = scope.level.container("ipsec")
    vpns = ipsec.objects("vpn") if ipsec is not None else {}
    yield from _unique(scope, vpns, "group", VPN_GROUP_NOT_UNIQUE)


# -- the tables -----------------------------------------------------------------------------

SERVER_GROUP_RULES: tuple[Rule, ...] = (
    group_gateways_defined,
    sa_proposals_defined,
    no_identical_group_policies,
    lifetimes_cover_activation_delay,
    multicast_needs_group_and_interface,
    multicast_interface_configured,
)
SERVER_PROPOSAL_RULES: tuple[Rule, ...] = (proposal_authentication,)
MEMBER_VPN_RULES: tuple[Rule, ...] = (vpn_gateway_defined, external_interface_configured)
SERVER_RULES: tuple[Callable[[RoleScope], Iterable[Diagnostic]], ...] = (unique_group_ids,)
MEMBER_RULES: tuple[Callable[[RoleScope], Iterable[Diagnostic]], ...] = (unique_vpn_groups,)


def check_groups(parsed: ParsedConfig, group_vpn: Node | None) -> Iterator[Diagnostic]:
    """The rules above, for the server and member levels that exist."""
    if group_vpn is None:
        return
    server = group_vpn.container("server")
    if server is not None:
        scope = RoleScope(parsed, "server", server)
        ipsec = server.container("ipsec")
        for proposal in ipsec.objects("proposal").values() if ipsec is not None else ():
            for rule in SERVER_PROPOSAL_RULES:
                yield from rule(scope, proposal)
        for group in server.objects("group").values():
            for rule in SERVER_GROUP_RULES:
                yield from rule(scope, group)
        for whole in SERVER_RULES:
            yield from whole(scope)
    member = group_vpn.container("member")
    if member is not None:
        scope = RoleScope(parsed, "member", member)
        ipsec = member.container("ipsec")
        for vpn in ipsec.objects("vpn").values() if ipsec is not None else ():
            for rule in MEMBER_VPN_RULES:
                yield from rule(scope, vpn)
        for whole in MEMBER_RULES:
            yield from whole(scope)
