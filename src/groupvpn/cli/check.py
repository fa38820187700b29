"""``groupvpn check -c FILE``: the equivalent of Junos ``commit check`` for a file."""

from __future__ import annotations

import click

from groupvpn.config import ConfigError, load_config_file

SUCCESS = "configuration check succeeds"


@click.command("check")
@click.option(
    "-c",
    "--config",
    "config_path",
    required=True,
    metavar="FILE",
    # No click.Path(exists=True): a missing file must be our one-line error with exit
    # status 1, not a usage error with status 2.
    help="Configuration file of Junos `set` statements.",
)
def check(config_path: str) -> None:
    """Check a configuration file and report every problem, as Junos `commit check` does."""
    try:
        load_config_file(config_path)
    except ConfigError as exc:
        click.echo(str(exc))
        raise SystemExit(1) from None
    click.echo(SUCCESS)
