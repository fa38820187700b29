"""``groupvpn request ...``: operator actions on a running daemon, in Junos words.

::

    groupvpn request security group-vpn server rekey group NAME [--control PATH]

The key server pushes a rekey of the group at once (every group policy gets a
new TEK; the KEK keeps its schedule) and the command prints what was sent.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from groupvpn.runtime.control import DEFAULT_SERVER_SOCKET, ControlError, call


@click.group()
def request() -> None:
    """Operator requests to a running daemon (Junos words)."""


@request.group(name="security")
def request_security() -> None:
    """Security requests."""


@request_security.group(name="group-vpn")
def request_group_vpn() -> None:
    """Group VPN requests."""


@request_group_vpn.group(name="server")
def request_server() -> None:
    """Requests to the group VPN key server."""


@request_server.command(name="rekey")
@click.argument("words", nargs=-1)
@click.option("--control", "socket_path", type=click.Path(path_type=Path),
              default=DEFAULT_SERVER_SOCKET, show_default=True,
              help="The key server's control socket.")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="JSON output.")
def rekey(words: tuple[str, ...], socket_path: Path, as_json: bool) -> None:
    """Push a rekey of a group now: group NAME."""
    if len(words) != 2 or words[0] != "group":
        raise click.UsageError("expected: rekey group NAME")
    try:
        result = call(socket_path, "server-rekey", {"group": words[1]})
    except ControlError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    click.echo(json.dumps(result, indent=2, sort_keys=True) if as_json else describe_rekey(result))


def describe_rekey(sent: dict[str, Any]) -> str:
    """``rekey sent: group g1 (group-id 1), SEQ 4, ...`` from the daemon's rekey JSON."""
    if sent["multicast-destination"] is not None:
        to = f"multicast {sent['multicast-destination']}"
    else:
        count = sent["members"]
        to = f"{count} member{'' if count == 1 else 's'}"
    text = (
        f"rekey sent: group {sent['group']} (group-id {sent['group-id']}), "
        f"SEQ {sent['sequence']}, {', '.join(sent['reasons'])}, to {to}"
    )
    if sent["new-teks"]:
        text += f"; new TEKs: {', '.join(sent['new-teks'])}"
    if sent["kek-rollover"]:
        text += "; new KEK"
    if sent.get("kek-deleted"):
        text += "; KEK deleted: members register again for the new keys"
    return text
