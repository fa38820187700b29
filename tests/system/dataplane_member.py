"""``groupvpn member`` with the Linux data plane, as the tests start it.

``python -m tests.system.dataplane_member -c CONF --port P --control SOCK --state-dir D``
runs :func:`groupvpn.runtime.member_daemon.run_member` exactly as the ``member``
command does with ``--dataplane linux``, but with the data plane's state file in the
test's own directory (``--state-dir``) instead of /run/groupvpn.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from groupvpn.config import load_config_file
from groupvpn.member.install import ScopePolicyFilter
from groupvpn.runtime import loop as event_loop
from groupvpn.runtime.base import DaemonOptions, StartupError
from groupvpn.runtime.binding import group_vpns, security_policies
from groupvpn.runtime.member_daemon import DataPlaneSettings, run_member
from groupvpn.runtime.metrics import parse_metrics_address


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dataplane_member")
    parser.add_argument("-c", "--config", required=True)
    parser.add_argument("--port", type=int, default=848)
    parser.add_argument("--control", required=True)
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--tun", default="gvpn0")
    parser.add_argument("--metrics", type=parse_metrics_address, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG,
        format="%(asctime)s groupvpn-member[%(process)d]: %(message)s",
        stream=sys.stderr,
    )
    config = load_config_file(args.config)
    assert config.member is not None
    gateways = list(config.member.ike.gateways.values())
    scope = ScopePolicyFilter(security_policies(config))
    options = DaemonOptions(
        port=args.port, control=Path(args.control), retransmit_interval=0.5, metrics=args.metrics
    )
    settings = DataPlaneSettings(tun_name=args.tun, state_dir=Path(args.state_dir))
    coroutine = run_member(
        gateways, group_vpns(config), options, scope, config=config, dataplane=settings
    )
    try:
        return event_loop.run(coroutine)
    except StartupError as exc:
        logging.getLogger("groupvpn").error("cannot start: %s", exc)
        return 1


if __name__ == "__main__":
    sys.exit(main())
