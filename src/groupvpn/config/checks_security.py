"""Commit checks of zones, address books, applications and security (scope) policies.

Rule tables per level, as in :mod:`groupvpn.config.checks`: policy contexts (from-zone,
to-zone), policies, address books, application sets.  Rules yield, never raise.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from groupvpn.config.diagnostics import Diagnostic
from groupvpn.config.parser import ParsedConfig
from groupvpn.config.resolve import (
    ANY_ADDRESS,
    address_books,
    address_in_book,
    application_sets,
    child,
    resolve_address,
    resolve_application,
    single_application,
    zone_defined,
    zones,
)
from groupvpn.config.tree import Node

ZONE_NOT_DEFINED = "Security zone must be defined"
ADDRESS_NOT_DEFINED = "Referenced address must be defined in an address book of zone {zone}"
SET_MEMBER_NOT_DEFINED = "Referenced address must be defined in the same address book"
APPLICATION_NOT_DEFINED = "Application must be defined"
GROUP_VPN_NOT_DEFINED = "Security group VPN must be defined"
POLICY_NEEDS_ACTION = "Policy action must be one of: permit deny reject"

Rule = Callable[[ParsedConfig, Node], Iterable[Diagnostic]]


def _diag(
    parsed: ParsedConfig, node: Node, statement: str | None, message: str, line: int
) -> Diagnostic:
    return Diagnostic(parsed.source, line, message, node.path, statement)


def _on_parent(parsed: ParsedConfig, node: Node, message: str) -> Diagnostic:
    return Diagnostic(parsed.source, node.line, message, node.path[:-2], node.statement)


# -- contexts -------------------------------------------------------------------------------


def zone_of_context_defined(parsed: ParsedConfig, zone: Node) -> Iterator[Diagnostic]:
    """``from-zone Z`` and ``to-zone Z`` must name a security zone."""
    if zone.name is not None and not zone_defined(parsed.root, zone.name):
        yield _on_parent(parsed, zone, ZONE_NOT_DEFINED)


# -- policies -------------------------------------------------------------------------------


def _zones_of(policy: Node) -> tuple[str, str]:
    # path: security policies from-zone F to-zone T policy NAME
    return policy.path[3], policy.path[5]


def addresses_defined(parsed: ParsedConfig, policy: Node) -> Iterator[Diagnostic]:
    match = policy.container("match")
    if match is None:
        return
    from_zone, to_zone = _zones_of(policy)
    for keyword, zone in (("source-address", from_zone), ("destination-address", to_zone)):
        for setting in match.lists.get(keyword, []):
            name = str(setting.value)
            if name in ANY_ADDRESS or not zone_defined(parsed.root, zone):
                continue
            if resolve_address(parsed.root, zone, name) is None:
                message = ADDRESS_NOT_DEFINED.format(zone=zone)
                yield _diag(parsed, match, setting.shown, message, setting.line)


def applications_defined(parsed: ParsedConfig, policy: Node) -> Iterator[Diagnostic]:
    match = policy.container("match")
    if match is None:
        return
    for setting in match.lists.get("application", []):
        if resolve_application(parsed.root, str(setting.value)) is None:
            yield _diag(parsed, match, setting.shown, APPLICATION_NOT_DEFINED, setting.line)


def group_vpn_defined(parsed: ParsedConfig, policy: Node) -> Iterator[Diagnostic]:
    tunnel = child(policy, "then", "permit", "tunnel")
    setting = tunnel.leaves.get("ipsec-group-vpn") if tunnel is not None else None
    if setting is None:
        return
    ipsec = child(parsed.root, "security", "group-vpn", "member", "ipsec")
    vpns = ipsec.objects("vpn") if ipsec is not None else {}
    if setting.value not in vpns:
        assert tunnel is not None
        yield _diag(parsed, tunnel, setting.shown, GROUP_VPN_NOT_DEFINED, setting.line)


def has_action(parsed: ParsedConfig, policy: Node) -> Iterator[Diagnostic]:
    then = policy.container("then")
    if then is not None and not any(then.has(k) for k in ("permit", "deny", "reject")):
        yield _diag(parsed, policy, "then", POLICY_NEEDS_ACTION, then.line)


# -- address books and application sets -----------------------------------------------------


def attached_zones_defined(parsed: ParsedConfig, book: Node) -> Iterator[Diagnostic]:
    attach = book.container("attach")
    if attach is None:
        return
    for setting in attach.lists.get("zone", []):
        if not zone_defined(parsed.root, str(setting.value)):
            yield _diag(parsed, attach, setting.shown, ZONE_NOT_DEFINED, setting.line)


def set_members_defined(parsed: ParsedConfig, book: Node) -> Iterator[Diagnostic]:
    for address_set in book.objects("address-set").values():
        for setting in address_set.lists.get("address", []):
            if address_in_book(book, str(setting.value)) is None:
                yield _diag(
                    parsed, address_set, setting.shown, SET_MEMBER_NOT_DEFINED, setting.line
                )


def application_set_members_defined(parsed: ParsedConfig, app_set: Node) -> Iterator[Diagnostic]:
    for setting in app_set.lists.get("application", []):
        if single_application(parsed.root, str(setting.value)) is None:
            yield _diag(parsed, app_set, setting.shown, APPLICATION_NOT_DEFINED, setting.line)


# -- the tables -----------------------------------------------------------------------------

CONTEXT_RULES: tuple[Rule, ...] = (zone_of_context_defined,)
POLICY_RULES: tuple[Rule, ...] = (
    addresses_defined,
    applications_defined,
    group_vpn_defined,
    has_action,
)
ADDRESS_BOOK_RULES: tuple[Rule, ...] = (attached_zones_defined, set_members_defined)
ZONE_BOOK_RULES: tuple[Rule, ...] = (set_members_defined,)
APPLICATION_SET_RULES: tuple[Rule, ...] = (application_set_members_defined,)


def _run(
    parsed: ParsedConfig, rules: tuple[Rule, ...], nodes: Iterable[Node]
) -> Iterator[Diagnostic]:
    for node in nodes:
        for rule in rules:
            yield from rule(parsed, node)


def check_security(parsed: ParsedConfig) -> Iterator[Diagnostic]:
    root = parsed.root
    policies = child(root, "security", "policies")
    for from_zone in policies.objects("from-zone").values() if policies is not None else ():
        yield from _run(parsed, CONTEXT_RULES, [from_zone])
        for to_zone in from_zone.objects("to-zone").values():
            yield from _run(parsed, CONTEXT_RULES, [to_zone])
            yield from _run(parsed, POLICY_RULES, to_zone.objects("policy").values())
    yield from _run(parsed, ADDRESS_BOOK_RULES, address_books(root).values())
    legacy = (z.container("address-book") for z in zones(root).values())
    yield from _run(parsed, ZONE_BOOK_RULES, (b for b in legacy if b is not None))
    yield from _run(parsed, APPLICATION_SET_RULES, application_sets(root).values())
