"""Operational commands in Junos words: ``groupvpn show ...`` and ``groupvpn clear ...``.

Each asks a running daemon over its control socket and prints a Junos-style
table, or the daemon's JSON with ``--json`` (keys in docs/operational-commands.md).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from groupvpn.cli import member_tables, server_tables, statistics_tables, tables
from groupvpn.runtime.control import (
    DEFAULT_MEMBER_SOCKET,
    DEFAULT_SERVER_SOCKET,
    ControlError,
    call,
)

Formatter = Callable[[dict[str, Any]], str]


def _run(
    socket_path: Path, command: str, args: dict[str, Any], as_json: bool, fmt: Formatter
) -> None:
    try:
        result = call(socket_path, command, args)
    except ControlError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    if as_json:
        click.echo(json.dumps(result, indent=2, sort_keys=True))
    else:
        click.echo(fmt(result))


def _options(default_socket: Path) -> Callable[[Callable[..., None]], Callable[..., None]]:
    def decorate(func: Callable[..., None]) -> Callable[..., None]:
        func = click.option("--json", "as_json", is_flag=True, help="JSON output.")(func)
        func = click.option(
            "--control", "socket_path", type=click.Path(path_type=Path), default=default_socket,
            show_default=True, help="The daemon's control socket.",
        )(func)  # fmt: skip
        return func

    return decorate


def _show(
    name: str, command: str, default_socket: Path, fmt: Formatter, help_text: str
) -> click.Command:
    @click.command(name=name, help=help_text)
    @_options(default_socket)
    def show(socket_path: Path, as_json: bool) -> None:
        _run(socket_path, command, {}, as_json, fmt)

    return show


@click.group()
def show() -> None:
    """Show operational state (Junos words)."""


@show.group(name="security")
def show_security() -> None:
    """Security state."""


@show_security.group(name="group-vpn")
def show_group_vpn() -> None:
    """Group VPN state."""


@show_group_vpn.group(name="server")
def show_server() -> None:
    """Group VPN key server state."""


@show_group_vpn.group(name="member")
def show_member() -> None:
    """Group VPN member state."""


@show_server.command(name="registered-members")
@click.argument("words", nargs=-1)
@_options(DEFAULT_SERVER_SOCKET)
def registered_members(words: tuple[str, ...], socket_path: Path, as_json: bool) -> None:
    """Members registered with the key server: [group NAME]."""
    args: dict[str, Any] = {}
    if words:
        if len(words) != 2 or words[0] != "group":
            raise click.UsageError("expected: registered-members [group NAME]")
        args["group"] = words[1]
    _run(
        socket_path,
        "server-registered-members",
        args,
        as_json,
        server_tables.registered_members,
    )


for _parent, _socket, _role in (
    (show_server, DEFAULT_SERVER_SOCKET, "server"),
    (show_member, DEFAULT_MEMBER_SOCKET, "member"),
):
    _ike = click.Group(name="ike", help="IKE (phase 1) state.")
    _ike.add_command(
        _show("security-associations", f"{_role}-ike-security-associations", _socket,
              tables.ike_security_associations, f"IKE security associations of the {_role}.")
    )  # fmt: skip
    _ipsec = click.Group(name="ipsec", help="Group IPsec SA state.")
    _ipsec_formatter = (
        server_tables.ipsec_security_associations
        if _role == "server"
        else member_tables.ipsec_security_associations
    )
    _ipsec.add_command(
        _show("security-associations", f"{_role}-ipsec-security-associations", _socket,
              _ipsec_formatter, f"Group IPsec security associations of the {_role}.")
    )  # fmt: skip
    _kek = click.Group(name="kek", help="Group KEK (rekey SA) state.")
    _kek_formatter = (
        server_tables.kek_security_associations
        if _role == "server"
        else member_tables.kek_security_associations
    )
    _kek.add_command(
        _show("security-associations", f"{_role}-kek-security-associations", _socket,
              _kek_formatter, f"Group KEKs (rekey SAs) of the {_role}.")
    )  # fmt: skip
    if _role == "member":
        _ipsec.add_command(
            _show("statistics", "member-dataplane-statistics", _socket,
                  member_tables.ipsec_statistics,
                  "ESP packets and octets through the group SAs, and drops by reason.")
        )  # fmt: skip
    _parent.add_command(_ike)
    _parent.add_command(_ipsec)
    _parent.add_command(_kek)

show_server.add_command(
    _show("statistics", "server-statistics", DEFAULT_SERVER_SOCKET,
          statistics_tables.server_statistics,
          "Registrations, rekeys, ACKs, retransmissions and removals, per group and in total.")
)  # fmt: skip

show_security.add_command(
    _show("dynamic-policies", "dynamic-policies", DEFAULT_MEMBER_SOCKET, tables.dynamic_policies,
          "Group policies installed as dynamic policies on this member.")
)  # fmt: skip


@click.group()
def clear() -> None:
    """Clear operational state (Junos words)."""


@clear.group(name="security")
def clear_security() -> None:
    """Security state."""


@clear_security.group(name="group-vpn")
def clear_group_vpn() -> None:
    """Group VPN state."""


@clear_group_vpn.group(name="member")
def clear_member() -> None:
    """Group VPN member state."""


@clear_group_vpn.group(name="server")
def clear_server() -> None:
    """Group VPN key server state."""


@clear_server.command(name="statistics")
@_options(DEFAULT_SERVER_SOCKET)
def clear_server_statistics(socket_path: Path, as_json: bool) -> None:
    """Set the key server's statistics back to zero."""
    _clear(socket_path, "clear-server-statistics")


@clear_member.group(name="ipsec")
def clear_member_ipsec() -> None:
    """Group IPsec SAs."""


@clear_member.group(name="kek")
def clear_member_kek() -> None:
    """Group KEKs (rekey SAs)."""


def _clear(socket_path: Path, command: str) -> None:
    try:
        call(socket_path, command)
    except ControlError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    # Like Junos, a clear command prints nothing when it succeeds.


@clear_member_ipsec.command(name="security-associations")
@_options(DEFAULT_MEMBER_SOCKET)
def clear_member_ipsec_sas(socket_path: Path, as_json: bool) -> None:
    """Drop the member's group SAs and KEKs and register again."""
    _clear(socket_path, "clear-member-ipsec-security-associations")


@clear_member_kek.command(name="security-associations")
@_options(DEFAULT_MEMBER_SOCKET)
def clear_member_kek_sas(socket_path: Path, as_json: bool) -> None:
    """Drop the member's KEKs (and with them its group SAs) and register again."""
    _clear(socket_path, "clear-member-kek-security-associations")


@clear_member_ipsec.command(name="statistics")
@_options(DEFAULT_MEMBER_SOCKET)
def clear_member_ipsec_statistics(socket_path: Path, as_json: bool) -> None:
    """Set the member's ESP packet, octet and drop counters back to zero."""
    _clear(socket_path, "clear-member-ipsec-statistics")
