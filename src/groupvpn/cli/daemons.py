"""``groupvpn server`` and ``groupvpn member``."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import click

from groupvpn.config import ConfigError, load_config_file
from groupvpn.config.model import Config, IkeGateway
from groupvpn.runtime.binding import PHASE1_DOIS
from groupvpn.runtime.daemons import (
    DEFAULT_PORT,
    DaemonOptions,
    StartupError,
    run_member,
    run_server,
)


def _setup_logging(role: str, verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format=f"%(asctime)s groupvpn-{role}[%(process)d]: %(message)s",
        datefmt="%Y-%m-%d %H:%M:%S",
        stream=sys.stderr,
    )


def _load(path: str) -> Config:
    try:
        return load_config_file(path)
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        sys.exit(1)


def _run(
    role: str,
    gateways: list[IkeGateway],
    options: DaemonOptions,
    runner: Callable[[list[IkeGateway], DaemonOptions], Coroutine[Any, Any, int]],
) -> None:
    if not gateways:
        click.echo(
            f"error: no IKE gateway configured under [edit security group-vpn {role} ike]", err=True
        )
        sys.exit(1)
    try:
        status = asyncio.run(runner(gateways, options))
    except StartupError as exc:
        logging.getLogger("groupvpn").error("cannot start: %s", exc)
        sys.exit(1)
    sys.exit(status)


_common_options = [
    click.option(
        "-c",
        "--config",
        "config_path",
        required=True,
        type=click.Path(dir_okay=False),
        help="Junos 'set' configuration file.",
    ),
    click.option(
        "--port",
        type=click.IntRange(1, 65535),
        default=DEFAULT_PORT,
        show_default=True,
        help="UDP port for IKE/GDOI (848 is the GDOI port).",
    ),
    click.option(
        "--phase1-doi",
        type=click.Choice(sorted(PHASE1_DOIS)),
        default="gdoi",
        show_default=True,
        help="DOI in the Phase 1 SA we send (ipsec lets tshark decrypt captures).",
    ),
    click.option(
        "--debug-keys",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="Append 'icookie,key' lines for Wireshark's IKEv1 decryption table "
        "(file mode 0600; debugging only).",
    ),
    click.option(
        "--retransmit-interval",
        type=click.FloatRange(0.1, 60),
        default=2.0,
        show_default=True,
        help="Seconds before the first retransmission; doubles for each further one.",
    ),
    click.option(
        "--retransmit-limit",
        type=click.IntRange(0, 10),
        default=4,
        show_default=True,
        help="Retransmissions of an unanswered IKE message before giving up.",
    ),
    click.option("-v", "--verbose", is_flag=True, help="Debug logging."),
]


def _with_common_options(func: Callable[..., None]) -> Callable[..., None]:
    for option in reversed(_common_options):
        func = option(func)
    return func


def _start(role: str, config_path: str, verbose: bool, **options: Any) -> None:
    """Load the configuration, pick this role's IKE gateways and run the daemon."""
    _setup_logging(role, verbose)
    config = _load(config_path)
    section = config.server if role == "server" else config.member
    gateways = list(section.ike.gateways.values()) if section else []
    options["phase1_doi"] = PHASE1_DOIS[options["phase1_doi"]]
    runner = run_server if role == "server" else run_member
    _run(role, gateways, DaemonOptions(**options), runner)


@click.command()
@_with_common_options
def server(config_path: str, verbose: bool, **options: Any) -> None:
    """Run the group key server (answers IKE Phase 1 from the configured gateways)."""
    _start("server", config_path, verbose, **options)


@click.command()
@_with_common_options
def member(config_path: str, verbose: bool, **options: Any) -> None:
    """Run a group member (initiates IKE Phase 1 to its configured key servers)."""
    _start("member", config_path, verbose, **options)
