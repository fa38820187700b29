"""Junos ``set`` configuration: parser, typed model and commit checks.

``load_config`` turns ``set security group-vpn ...`` statements into a :class:`Config`, or
raises :class:`ConfigError` listing every problem as Junos would word it.  The statement
tree itself is data in :mod:`groupvpn.config.schema`.
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

__all__ = [
    "PROPOSAL_SETS",
    "Config",
    "ConfigError",
    "Diagnostic",
    "Identity",
    "IkeConfig",
    "IkeGateway",
    "IkePolicy",
    "IkeProposal",
    "MemberConfig",
    "Phase",
    "Secret",
    "ServerConfig",
    "check_config",
    "format_report",
    "load_config",
    "load_config_file",
    "read_config_text",
]
