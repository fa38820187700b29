"""Build the typed model from a checked tree, and the public entry points.

The builders run only on a tree that passed every check, so they may assume mandatory
statements are present and references resolve; they still go through small typed
accessors so a gap between the checks and the builders fails loudly in tests.
"""

from __future__ import annotations

from ipaddress import IPv4Address
from pathlib import Path
from typing import TypeVar, cast

from groupvpn.config import build_groups, build_security, model
from groupvpn.config.checks import check
from groupvpn.config.diagnostics import ConfigError, Diagnostic, Phase
from groupvpn.config.parser import parse
from groupvpn.config.tree import Node

T = TypeVar("T")


def _get(node: Node, keyword: str, kind: type[T]) -> T:
    value = node.value(keyword)
    if not isinstance(value, kind):
        raise AssertionError(f"{' '.join(node.path)} {keyword}: expected {kind.__name__}")
    return value


def _optional(node: Node, keyword: str, kind: type[T]) -> T | None:
    return _get(node, keyword, kind) if node.value(keyword) is not None else None


def _identity(node: Node, keyword: str) -> model.Identity | None:
    choice = node.choice(keyword)
    if choice is None:
        return None
    kind, value = choice
    assert isinstance(value, IPv4Address | str)
    return model.Identity(cast(model.IdentityKind, kind), value)


def _proposal(node: Node) -> model.IkeProposal:
    assert node.name is not None
    return model.IkeProposal(
        name=node.name,
        authentication_method=cast(
            model.AuthenticationMethod, _get(node, "authentication-method", str)
        ),
        authentication_algorithm=cast(
            model.AuthenticationAlgorithm, _get(node, "authentication-algorithm", str)
        ),
        dh_group=cast(model.DhGroup, _get(node, "dh-group", int)),
        encryption_algorithm=cast(
            model.EncryptionAlgorithm, _get(node, "encryption-algorithm", str)
        ),
        lifetime_seconds=_get(node, "lifetime-seconds", int),
        description=_optional(node, "description", str),
    )


def _policy(node: Node, proposals: dict[str, model.IkeProposal]) -> model.IkePolicy:
    assert node.name is not None
    proposal_set = cast(model.ProposalSet | None, _optional(node, "proposal-set", str))
    if proposal_set is not None:
        offered = model.PROPOSAL_SETS[proposal_set]
    else:
        offered = tuple(proposals[str(name)] for name in node.values("proposals"))
    key = node.choice("pre-shared-key")
    assert key is not None and isinstance(key[1], model.Secret)
    return model.IkePolicy(
        name=node.name,
        mode=cast(model.IkeMode, _get(node, "mode", str)),
        proposals=offered,
        pre_shared_key=key[1],
        description=_optional(node, "description", str),
        proposal_set=proposal_set,
    )


def _gateway(node: Node, policies: dict[str, model.IkePolicy]) -> model.IkeGateway:
    assert node.name is not None
    addresses = tuple(a for a in node.values("address") if isinstance(a, IPv4Address))
    return model.IkeGateway(
        name=node.name,
        policy=policies[_get(node, "ike-policy", str)],
        addresses=addresses,
        local_address=_optional(node, "local-address", IPv4Address),
        local_identity=_identity(node, "local-identity"),
        remote_identity=_identity(node, "remote-identity"),
    )


def _ike(node: Node | None) -> model.IkeConfig:
    if node is None:
        return model.IkeConfig({}, {}, {})
    proposals = {name: _proposal(n) for name, n in node.objects("proposal").items()}
    policies = {name: _policy(n, proposals) for name, n in node.objects("policy").items()}
    gateways = {name: _gateway(n, policies) for name, n in node.objects("gateway").items()}
    return model.IkeConfig(proposals, policies, gateways)


def _server(node: Node) -> model.ServerConfig:
    ike = _ike(node.container("ike"))
    ipsec = node.container("ipsec")
    proposal_nodes = ipsec.objects("proposal") if ipsec is not None else {}
    proposals = {name: build_groups.ipsec_proposal(n) for name, n in proposal_nodes.items()}
    groups = {
        name: build_groups.server_group(n, ike.gateways, proposals)
        for name, n in node.objects("group").items()
    }
    return model.ServerConfig(ike, proposals, groups)


def _member(node: Node) -> model.MemberConfig:
    ike = _ike(node.container("ike"))
    ipsec = node.container("ipsec")
    vpn_nodes = ipsec.objects("vpn") if ipsec is not None else {}
    vpns = {name: build_groups.member_vpn(n, ike.gateways) for name, n in vpn_nodes.items()}
    return model.MemberConfig(ike, vpns)


def _build(root: Node) -> model.Config:
    security = root.container("security")
    group_vpn = security.container("group-vpn") if security is not None else None
    server = group_vpn.container("server") if group_vpn is not None else None
    member = group_vpn.container("member") if group_vpn is not None else None
    return model.Config(
        server=_server(server) if server else None,
        member=_member(member) if member else None,
        co_location=group_vpn is not None and "co-location" in group_vpn.leaves,
        security=build_security.security(root),
        interfaces=build_security.interfaces(root),
    )


# -- public API -----------------------------------------------------------------------------


def check_config(text: str, source: str = "<config>") -> list[Diagnostic]:
    """Every problem in ``text``: rejected lines first (in line order), then commit checks.

    An empty list means :func:`load_config` will succeed.
    """
    parsed = parse(text, source)
    return [*parsed.diagnostics, *check(parsed)]


def load_config(text: str, source: str = "<config>") -> model.Config:
    """Parse and check Junos ``set`` statements; raise :class:`ConfigError` listing all
    problems, or return the typed configuration."""
    parsed = parse(text, source)
    diagnostics = [*parsed.diagnostics, *check(parsed)]
    if diagnostics:
        raise ConfigError(diagnostics)
    return _build(parsed.root)


def read_config_text(path: str | Path) -> str:
    """The text of a configuration file; unreadable or non-UTF-8 files raise ConfigError."""
    source = str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        reason = exc.strerror or exc.__class__.__name__
        message = f"error: could not read configuration file {source!r}: {reason}"
        raise ConfigError([Diagnostic(source, None, message, phase=Phase.FILE)]) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        message = "configuration file is not valid UTF-8 text"
        raise ConfigError([Diagnostic(source, line, message, phase=Phase.LOAD)]) from None


def load_config_file(path: str | Path) -> model.Config:
    """:func:`load_config` on a file; the file name is used in diagnostics."""
    return load_config(read_config_text(path), str(path))
