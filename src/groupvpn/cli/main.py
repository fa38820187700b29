"""The ``groupvpn`` command."""

from __future__ import annotations

import click

from groupvpn import __version__
from groupvpn.cli.check import check
from groupvpn.cli.daemons import member, server
from groupvpn.cli.lab import lab
from groupvpn.cli.reload import reload
from groupvpn.cli.request import request
from groupvpn.cli.show import clear, show


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="groupvpn")
def cli() -> None:
    """Group VPN key server and group member (GDOI over IKEv1, Junos-style configuration)."""


for command in (check, server, member, show, clear, reload, request, lab):
    cli.add_command(command)


def main() -> None:
    cli()
