"""``groupvpn server`` and ``groupvpn member``."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import click

from groupvpn.config import ConfigError, load_config_file
from groupvpn.config.model import Config, IkeGateway, MemberConfig, ServerConfig
from groupvpn.dataplane.linux import DEFAULT_TUN_NAME
from groupvpn.member.install import ScopePolicyFilter
from groupvpn.runtime import loop as event_loop
from groupvpn.runtime.base import DEFAULT_PORT, DaemonOptions, StartupError
from groupvpn.runtime.binding import (
    PHASE1_DOIS,
    group_vpns,
    security_policies,
)
from groupvpn.runtime.compiled_config import load_compiled_server_setup
from groupvpn.runtime.journal import JournalFormatter, stderr_is_journal
from groupvpn.runtime.member_daemon import DataPlaneSettings, run_member
from groupvpn.runtime.metrics import MetricsAddressError, parse_metrics_address
from groupvpn.runtime.server_daemon import dialect_problem, run_server
from groupvpn.runtime.server_setup import ServerSetup, SetupError
from groupvpn.runtime.state import DEFAULT_SERVER_STATE_DIR
from groupvpn.wire.dialect import DIALECTS


def _setup_logging(role: str, verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format=f"%(asctime)s groupvpn-{role}[%(process)d]: %(message)s",
        datefmt="%Y-%m-%d %H:%M:%S",
        stream=sys.stderr,
    )
    if stderr_is_journal():  # journald adds the time and name itself (runtime/journal.py)
        for handler in logging.getLogger().handlers:
            handler.setFormatter(JournalFormatter("%(message)s"))


def _load(path: str) -> Config:
    try:
        return load_config_file(path)
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        sys.exit(1)


def _gateways(role: str, section: ServerConfig | MemberConfig | None) -> list[IkeGateway]:
    """The role's IKE gateways, or a clear error when there are none."""
    if section is None or not section.ike.gateways:
        click.echo(
            f"error: no IKE gateway configured under [edit security group-vpn {role} ike]",
            err=True,
        )
        sys.exit(1)
    return list(section.ike.gateways.values())


def _run(coroutine: Coroutine[Any, Any, int]) -> None:
    try:
        status = event_loop.run(coroutine)
    except StartupError as exc:
        logging.getLogger("groupvpn").error("cannot start: %s", exc)
        sys.exit(1)
    sys.exit(status)


def _metrics_address(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> tuple[str, int] | None:
    if value is None:
        return None
    try:
        return parse_metrics_address(value)
    except MetricsAddressError as exc:
        raise click.BadParameter(str(exc)) from None


_common_options = [
    click.option("-c", "--config", "config_path", required=True,
                 type=click.Path(dir_okay=False), help="Junos 'set' configuration file."),
    click.option("--port", type=click.IntRange(1, 65535), default=DEFAULT_PORT,
                 show_default=True, help="UDP port for IKE/GDOI (848 is the GDOI port)."),
    click.option("--dialect", type=click.Choice(sorted(DIALECTS)), default="v1",
                 show_default=True,
                 help="GDOI wire dialect: v1 = RFC 3547 (Juniper Group VPNv1), v2 = RFC 6407."),
    click.option("--phase1-doi", type=click.Choice(sorted(PHASE1_DOIS)), default="gdoi",
                 show_default=True,
                 help="DOI in the Phase 1 SA we send (ipsec lets tshark decrypt captures)."),
    click.option("--control", type=click.Path(path_type=Path), default=None,
                 help="Control socket for show/clear (default under /run/groupvpn/)."),
    click.option("--debug-keys", type=click.Path(dir_okay=False, path_type=Path), default=None,
                 help="Append 'icookie,key' lines for Wireshark's IKEv1 decryption table "
                      "(file mode 0600; debugging only)."),
    click.option("--retransmit-interval", type=click.FloatRange(0.1, 60), default=2.0,
                 show_default=True,
                 help="Seconds before the first retransmission; doubles for each further one."),
    click.option("--retransmit-limit", type=click.IntRange(0, 10), default=4, show_default=True,
                 help="Retransmissions of an unanswered message before giving up."),
    click.option("--metrics", metavar="[ADDR:]PORT", callback=_metrics_address, default=None,
                 help="Serve Prometheus metrics at http://ADDR:PORT/metrics (ADDR defaults "
                      "to 127.0.0.1; off unless given)."),
    click.option("-v", "--verbose", is_flag=True, help="Debug logging."),
]  # fmt: skip


def _with_common_options(func: Callable[..., None]) -> Callable[..., None]:
    for option in reversed(_common_options):
        func = option(func)
    return func


def _options(**options: Any) -> DaemonOptions:
    options["phase1_doi"] = PHASE1_DOIS[options["phase1_doi"]]
    options["dialect"] = DIALECTS[options["dialect"]]
    return DaemonOptions(**options)


@click.command()
@_with_common_options
@click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path),
              default=DEFAULT_SERVER_STATE_DIR, show_default=True,
              help="Where the server keeps what must survive a restart: the rekey signing "
                   "key, the group keys, SEQ and members, the compiled configuration "
                   "(docs/persistence.md); mode 0700, files 0600.")  # fmt: skip
def server(config_path: str, verbose: bool, state_dir: Path, **options: Any) -> None:
    """Run the group key server: IKE phase 1 and GROUPKEY-PULL registration."""
    _setup_logging("server", verbose)
    daemon_options = _options(**options)

    def refuse_what_this_dialect_cannot_run(setup: ServerSetup) -> None:
        if (problem := dialect_problem(setup, daemon_options.dialect)) is not None:
            raise SetupError(f"cannot start: {problem}")

    try:
        setup = load_compiled_server_setup(
            Path(config_path), state_dir, refuse_what_this_dialect_cannot_run
        )
    except SetupError as exc:
        click.echo(str(exc), err=True)
        sys.exit(1)
    _run(run_server(Path(config_path), setup, daemon_options, state_dir))


@click.command()
@_with_common_options
@click.option("--dataplane", type=click.Choice(["none", "linux"]), default="none",
              show_default=True,
              help="linux: forward traffic of the dynamic policies as ESP through a TUN "
                   "device and policy routes on group-vpn-external-interface (needs root); "
                   "none: keys and dynamic policies only, no packet forwarding.")  # fmt: skip
@click.option(
    "--tun",
    "tun_name",
    default=DEFAULT_TUN_NAME,
    show_default=True,
    help="With --dataplane linux: the TUN device's name (must start with gvpn).",
)
@click.option(
    "--group-clock-skew",
    type=float,
    default=0.0,
    hidden=True,
    help="Fault injection for tests: seconds added to this member's group clock.",
)
def member(
    config_path: str, verbose: bool, dataplane: str, tun_name: str, group_clock_skew: float,
    **options: Any,
) -> None:  # fmt: skip
    """Run a group member: register each group VPN with its key server."""
    _setup_logging("member", verbose)
    config = _load(config_path)
    gateways = _gateways("member", config.member)
    scope = ScopePolicyFilter(security_policies(config))
    settings = (
        DataPlaneSettings(tun_name=tun_name, group_clock_skew=group_clock_skew)
        if dataplane == "linux" else None
    )  # fmt: skip
    _run(run_member(gateways, group_vpns(config), _options(**options), scope, config=config,
                    dataplane=settings))  # fmt: skip
