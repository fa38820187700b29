"""Commit checks: the rules Junos applies at ``commit``, run on the parsed tree.

Two kinds: rules that follow from the schema (mandatory statements, list limits) and the
semantic rules below, kept as tables per level (proposal, policy, gateway, whole
configuration) with the roles they apply to.  Server groups and member VPNs have their
tables in :mod:`groupvpn.config.checks_groups`; zones, address books, applications and
security policies in :mod:`groupvpn.config.checks_security`.  Each rule yields diagnostics and never
raises; a rule skips statements whose line was rejected, so one mistake is reported once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import Literal

from groupvpn.config.checks_groups import check_groups
from groupvpn.config.checks_security import check_security
from groupvpn.config.diagnostics import MISSING_MANDATORY, Diagnostic, quote_word
from groupvpn.config.parser import ParsedConfig
from groupvpn.config.statements import LeafList
from groupvpn.config.tree import Node

Role = Literal["server", "member"]
BOTH: tuple[Role, ...] = ("server", "member")
MEMBER: tuple[Role, ...] = ("member",)

ONE_REMOTE_ADDRESS = (
    "Only one remote address is allowed to be configured per IKE gateway configuration"
)
POLICY_NOT_DEFINED = (
    "Referenced IKE policy must be defined under [edit security group-vpn {role} ike policy]"
)
NEEDS_PROPOSALS = "IKE policy must have either proposals or proposal-set configured"
NEEDS_KEY = "IKE policy must have either local certificate or pre-shared key configured"
PROPOSAL_NOT_DEFINED = "Referenced proposal is not defined"
SAME_DH_GROUP = "All proposals of an IKE policy must use the same dh-group"
RSA_UNSUPPORTED = "Authentication method rsa-signatures is not supported yet; use pre-shared-keys"
SAME_LOCAL_ADDRESS = "Member can not have the same local address as server"
SERVER_AND_MEMBER = "Configuring both group-vpn server and group-vpn member is not supported"
COLOCATED_ONE_ADDRESS = (
    "In co-location mode the {role} must use one local-address across all its IKE gateways "
    "({first} is already used)"
)
TOO_MANY = "Number of elements exceeds limit of {limit}"


@dataclass(frozen=True, slots=True)
class Scope:
    """What a rule sees: the whole parse, the role and its ``ike`` level."""

    parsed: ParsedConfig
    role: Role
    ike: Node

    def diag(self, node: Node, statement: str | None, message: str, line: int) -> Diagnostic:
        return Diagnostic(self.parsed.source, line, message, node.path, statement)

    def failed(self, node: Node, keyword: str) -> bool:
        return (*node.path, keyword) in self.parsed.failed


Rule = Callable[[Scope, Node], Iterable[Diagnostic]]


def _on_parent(scope: Scope, node: Node, message: str) -> Diagnostic:
    """A rule about an object as a whole is shown at its parent: ``'policy pol1'``."""
    return Diagnostic(scope.parsed.source, node.line, message, node.path[:-2], node.statement)


# -- proposal rules -------------------------------------------------------------------------


def rsa_not_supported(scope: Scope, proposal: Node) -> Iterator[Diagnostic]:
    setting = proposal.leaves.get("authentication-method")
    if setting is not None and setting.value == "rsa-signatures":
        yield scope.diag(proposal, setting.shown, RSA_UNSUPPORTED, setting.line)


# -- policy rules ---------------------------------------------------------------------------


def has_proposals(scope: Scope, policy: Node) -> Iterator[Diagnostic]:
    if any(policy.has(k) or scope.failed(policy, k) for k in ("proposals", "proposal-set")):
        return
    yield _on_parent(scope, policy, NEEDS_PROPOSALS)


def has_key(scope: Scope, policy: Node) -> Iterator[Diagnostic]:
    if not policy.has("pre-shared-key") and not scope.failed(policy, "pre-shared-key"):
        yield _on_parent(scope, policy, NEEDS_KEY)


def proposals_defined(scope: Scope, policy: Node) -> Iterator[Diagnostic]:
    defined = scope.ike.objects("proposal")
    for setting in policy.lists.get("proposals", []):
        if setting.value not in defined:
            yield scope.diag(policy, setting.shown, PROPOSAL_NOT_DEFINED, setting.line)


def same_dh_group(scope: Scope, policy: Node) -> Iterator[Diagnostic]:
    defined = scope.ike.objects("proposal")
    first_group: object = None
    for setting in policy.lists.get("proposals", []):
        proposal = defined.get(str(setting.value))
        if proposal is None or "dh-group" not in proposal.leaves:
            continue
        group = proposal.value("dh-group")
        if first_group is None:
            first_group = group
        elif group != first_group:
            yield scope.diag(policy, "proposals", SAME_DH_GROUP, setting.line)
            return


# -- gateway rules --------------------------------------------------------------------------


def policy_defined(scope: Scope, gateway: Node) -> Iterator[Diagnostic]:
    setting = gateway.leaves.get("ike-policy")
    if setting is not None and setting.value not in scope.ike.objects("policy"):
        message = POLICY_NOT_DEFINED.format(role=scope.role)
        yield scope.diag(gateway, setting.shown, message, setting.line)


def one_remote_address(scope: Scope, gateway: Node) -> Iterator[Diagnostic]:
    addresses = gateway.lists.get("address", [])
    if len(addresses) > 1:
        yield scope.diag(gateway, "address", ONE_REMOTE_ADDRESS, addresses[1].line)


def local_address_not_server(scope: Scope, gateway: Node) -> Iterator[Diagnostic]:
    setting = gateway.leaves.get("local-address")
    if setting is None:
        return
    # In co-location mode the member must not use the server's own address either (the
    # spec: "the server and member must have different IP addresses"); the server's
    # address is the local address of its gateways.
    servers = set(gateway.values("address")) | colocated_server_addresses(scope.parsed)
    if setting.value in servers:
        yield scope.diag(gateway, setting.shown, SAME_LOCAL_ADDRESS, setting.line)


def colocated_server_addresses(parsed: ParsedConfig) -> set[IPv4Address]:
    group_vpn = _child(parsed.root, "security", "group-vpn")
    if group_vpn is None or "co-location" not in group_vpn.leaves:
        return set()
    ike = _child(group_vpn, "server", "ike")
    if ike is None:
        return set()
    found: set[IPv4Address] = set()
    for gateway in ike.objects("gateway").values():
        local = gateway.value("local-address")
        if isinstance(local, IPv4Address):
            found.add(local)
    return found


# -- the tables -----------------------------------------------------------------------------

PROPOSAL_RULES: tuple[tuple[tuple[Role, ...], Rule], ...] = ((BOTH, rsa_not_supported),)
POLICY_RULES: tuple[tuple[tuple[Role, ...], Rule], ...] = (
    (BOTH, has_proposals),
    (BOTH, has_key),
    (BOTH, proposals_defined),
    (BOTH, same_dh_group),
)
GATEWAY_RULES: tuple[tuple[tuple[Role, ...], Rule], ...] = (
    (BOTH, policy_defined),
    (MEMBER, one_remote_address),
    (MEMBER, local_address_not_server),
)
# Which rules run on which named objects under ``ike``.
IKE_OBJECT_RULES = {
    "proposal": PROPOSAL_RULES,
    "policy": POLICY_RULES,
    "gateway": GATEWAY_RULES,
}


def server_and_member(parsed: ParsedConfig) -> Iterator[Diagnostic]:
    group_vpn = _child(parsed.root, "security", "group-vpn")
    if group_vpn is None or "co-location" in group_vpn.leaves:
        return
    member = group_vpn.container("member")
    if member is not None and group_vpn.container("server") is not None:
        yield Diagnostic(parsed.source, member.line, SERVER_AND_MEMBER, group_vpn.path, "member")


def colocated_one_address_each(parsed: ParsedConfig) -> Iterator[Diagnostic]:
    """Co-location: "one IP address assigned to the server and one ... to the member
    across groups" (the spec), so each side's packets reach the right function."""
    group_vpn = _child(parsed.root, "security", "group-vpn")
    if group_vpn is None or "co-location" not in group_vpn.leaves:
        return
    for role in ("server", "member"):
        ike = _child(group_vpn, role, "ike")
        if ike is None:
            continue
        first: IPv4Address | None = None
        for gateway in ike.objects("gateway").values():
            setting = gateway.leaves.get("local-address")
            if setting is None or not isinstance(setting.value, IPv4Address):
                continue
            if first is None:
                first = setting.value
            elif setting.value != first:
                message = COLOCATED_ONE_ADDRESS.format(role=role, first=first)
                yield Diagnostic(parsed.source, setting.line, message, gateway.path, setting.shown)


GLOBAL_RULES: tuple[Callable[[ParsedConfig], Iterable[Diagnostic]], ...] = (
    server_and_member,
    colocated_one_address_each,
)


# -- running them ---------------------------------------------------------------------------


def check(parsed: ParsedConfig) -> list[Diagnostic]:
    """Every commit problem of ``parsed``, in line order."""
    found: list[Diagnostic] = list(_schema_rules(parsed, parsed.root))
    for global_rule in GLOBAL_RULES:
        found.extend(global_rule(parsed))
    group_vpn = _child(parsed.root, "security", "group-vpn")
    for role in BOTH:
        ike = _child(group_vpn, role, "ike") if group_vpn is not None else None
        if ike is None:
            continue
        scope = Scope(parsed, role, ike)
        for keyword, rules in IKE_OBJECT_RULES.items():
            for obj in ike.objects(keyword).values():
                for roles, rule in rules:
                    if role in roles:
                        found.extend(rule(scope, obj))
    found.extend(check_groups(parsed, group_vpn))
    found.extend(check_security(parsed))
    found.sort(key=lambda d: d.line if d.line is not None else 1 << 62)
    return found


def _schema_rules(parsed: ParsedConfig, node: Node) -> Iterator[Diagnostic]:
    """Mandatory statements and list limits, for ``node`` and everything below it."""
    for keyword in node.schema.mandatory:
        if not node.has(keyword) and (*node.path, keyword) not in parsed.failed:
            parent = node.path[:-2] if node.name is not None else node.path[:-1]
            message = MISSING_MANDATORY.format(keyword=keyword)
            yield Diagnostic(
                parsed.source,
                node.line,
                message,
                parent,
                node.statement,
                missing_mandatory=True,
            )
    for keyword, settings in node.lists.items():
        statement = node.schema.children[keyword]
        limit = statement.max_items if isinstance(statement, LeafList) else None
        if limit is not None and len(settings) > limit:
            message = TOO_MANY.format(limit=limit)
            line = settings[limit].line
            yield Diagnostic(parsed.source, line, message, node.path, quote_word(keyword))
    for child in node.containers.values():
        yield from _schema_rules(parsed, child)
    for objects in node.named.values():
        for obj in objects.values():
            yield from _schema_rules(parsed, obj)


def _child(node: Node | None, *keywords: str) -> Node | None:
    for keyword in keywords:
        if node is None:
            return None
        node = node.container(keyword)
    return node
