"""``groupvpn server``: the group key server on UDP 848.

It answers IKE phase 1 from its configured gateways, registers members with
GROUPKEY-PULL into the groups they may join, and answers `show` commands on
its control socket until SIGTERM/SIGINT.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from groupvpn.config.model import IkeGateway
from groupvpn.runtime import views
from groupvpn.runtime.base import Daemon, DaemonOptions, StartupError, group_by_local_address
from groupvpn.runtime.control import DEFAULT_SERVER_SOCKET
from groupvpn.runtime.state import SIGNING_KEY_FILE, StateDirectory, StateError
from groupvpn.server.core import KeyServerCore
from groupvpn.server.groups import GroupDefinition, GroupKeyServer
from groupvpn.server.signing import SigningKey

log = logging.getLogger("groupvpn")


async def run_server(
    gateways: Sequence[IkeGateway],
    groups: Sequence[GroupDefinition],
    options: DaemonOptions,
    state_dir: Path,
) -> int:
    """Serve until told to stop; 0 on a clean stop."""
    missing = [g.name for g in gateways if g.local_address is None]
    if missing:
        raise StartupError(
            "server IKE gateways need local-address (the key server's address): "
            + ", ".join(missing)
        )
    daemon = Daemon(options)
    daemon.open_debug_keys()
    signing_key = None
    if any(group.kek is not None for group in groups):
        signing_key = _load_signing_key(state_dir)
    key_server = GroupKeyServer(groups, options.dialect, signing_key=signing_key, port=options.port)
    for local, local_gateways in group_by_local_address(gateways).items():
        core = KeyServerCore(daemon.new_endpoint(local, local_gateways), key_server)
        await daemon.listen(core, local, ", ".join(g.name for g in local_gateways))
    loop = asyncio.get_running_loop()

    def clock() -> views.Clock:
        return views.Clock(loop.time())

    def registered_members(args: dict[str, Any]) -> object:
        group = args.get("group")
        return views.server_registered_members(
            key_server, clock(), group if isinstance(group, str) else None
        )

    await daemon.start_control(
        DEFAULT_SERVER_SOCKET,
        {
            "server-registered-members": registered_members,
            "server-ike-security-associations": lambda args: views.ike_security_associations(
                daemon.endpoints, clock()
            ),
            "server-ipsec-security-associations": lambda args: (
                views.server_ipsec_security_associations(key_server, clock())
            ),
            "server-kek-security-associations": lambda args: views.server_kek_security_associations(
                key_server, clock()
            ),
        },
    )
    daemon.install_signal_handlers()
    names = ", ".join(f"{g.name} (group-id {g.group_id})" for g in groups) or "none"
    log.info("key server running; groups: %s", names)
    await daemon.stop.wait()
    await daemon.shutdown()
    return 0


def _load_signing_key(state_dir: Path) -> SigningKey:
    """The key members verify rekeys with: the same one across restarts."""
    state = StateDirectory(state_dir)
    try:
        state.prepare()
        key, generated = state.signing_key()
    except StateError as exc:
        raise StartupError(str(exc)) from exc
    verb = "generated and stored" if generated else "loaded"
    log.info("rekey signing key %s: rsa-%d %s (%s)", verb, key.bits, key.fingerprint,
             state_dir / SIGNING_KEY_FILE)  # fmt: skip
    return key
