"""``groupvpn reload``: make the running key server read its configuration file again.

The same as SIGHUP, but the operator sees the outcome: what changed, the rekey
each change pushed, or why the new configuration was refused (the server then
keeps the old one).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from groupvpn.cli.request import describe_rekey
from groupvpn.runtime.control import DEFAULT_SERVER_SOCKET, ControlError, call


@click.command()
@click.option("--control", "socket_path", type=click.Path(path_type=Path),
              default=DEFAULT_SERVER_SOCKET, show_default=True,
              help="The key server's control socket.")  # fmt: skip
def reload(socket_path: Path) -> None:
    """Reload the key server's configuration (like SIGHUP), or say why not."""
    try:
        result = call(socket_path, "reload")
    except ControlError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    click.echo(format_changes(result))


def format_changes(result: dict[str, Any]) -> str:
    changes = result.get("changes", [])
    if not changes:
        return "configuration reloaded: no group changed"
    lines = ["configuration reloaded"]
    for change in changes:
        line = f"  group {change['group']} (group-id {change['group-id']}): {change['change']}"
        if change["details"]:
            line += ": " + "; ".join(change["details"])
        lines.append(line)
        if change.get("rekey") is not None:
            lines.append(f"    {describe_rekey(change['rekey'])}")
    return "\n".join(lines)
