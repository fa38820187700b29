"""Junos ``set`` configuration: parser, typed model and commit checks.

``load_config`` turns Junos ``set`` statements (``security group-vpn``, ``security
zones``, ``security address-book``, ``security policies``, ``applications``,
``interfaces``) into a :class:`Config`, or raises :class:`ConfigError` listing every
problem as Junos would word it.  The statement tree itself is data in
:mod:`groupvpn.config.schema`.
"""

from __future__ import annotations

from groupvpn.config.diagnostics import ConfigError, Diagnostic, Phase, format_report
from groupvpn.config.loader import check_config, load_config, load_config_file, read_config_text
from groupvpn.config.model import (
    PROPOSAL_SETS,
    Config,
    Identity,
    IkeConfig,
    IkeGateway,
    IkePolicy,
    IkeProposal,
    MemberConfig,
    Secret,
    ServerConfig,
)
from groupvpn.config.model_groups import (
    IpsecProposal,
    IpsecSa,
    MatchPolicy,
    MemberVpn,
    ServerGroup,
    ServerMemberCommunication,
)
from groupvpn.config.model_security import (
    PREDEFINED_APPLICATIONS,
    AddressBook,
    Application,
    Interface,
    InterfaceUnit,
    SecurityConfig,
    SecurityPolicy,
    Zone,
    ZoneInterface,
)

__all__ = [
    "PREDEFINED_APPLICATIONS",
    "PROPOSAL_SETS",
    "AddressBook",
    "Application",
    "Config",
    "ConfigError",
    "Diagnostic",
    "Identity",
    "IkeConfig",
    "IkeGateway",
    "IkePolicy",
    "IkeProposal",
    "Interface",
    "InterfaceUnit",
    "IpsecProposal",
    "IpsecSa",
    "MatchPolicy",
    "MemberConfig",
    "MemberVpn",
    "Phase",
    "Secret",
    "SecurityConfig",
    "SecurityPolicy",
    "ServerConfig",
    "ServerGroup",
    "ServerMemberCommunication",
    "Zone",
    "ZoneInterface",
    "check_config",
    "format_report",
    "load_config",
    "load_config_file",
    "read_config_text",
]
