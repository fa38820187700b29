"""``groupvpn server``: the group key server on UDP 848.

It answers IKE phase 1 from its configured gateways, registers members with
GROUPKEY-PULL into the groups they may join, and answers `show` commands on
its control socket until SIGTERM/SIGINT.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

from groupvpn.ike.endpoint import IkeEndpoint
from groupvpn.runtime import server_views, views
from groupvpn.runtime.base import Daemon, DaemonOptions, StartupError
from groupvpn.runtime.binding import phase1_peer
from groupvpn.runtime.control import DEFAULT_SERVER_SOCKET, ControlError
from groupvpn.runtime.server_setup import ServerSetup, SetupError, load_server_setup
from groupvpn.runtime.state import SIGNING_KEY_FILE, StateDirectory, StateError
from groupvpn.server.core import KeyServerCore
from groupvpn.server.groups import GroupKeyServer
from groupvpn.server.signing import SigningKey

log = logging.getLogger("groupvpn")


async def run_server(
    config_path: Path, setup: ServerSetup, options: DaemonOptions, state_dir: Path
) -> int:
    """Serve until told to stop; 0 on a clean stop."""
    daemon = Daemon(options)
    daemon.open_debug_keys()
    signing_key = _load_signing_key(state_dir) if setup.has_kek else None
    key_server = GroupKeyServer(
        setup.groups, options.dialect, signing_key=signing_key, port=options.port
    )
    endpoints = {}
    for local, local_gateways in setup.by_local_address.items():
        endpoints[local] = daemon.new_endpoint(local, local_gateways)
        core = KeyServerCore(endpoints[local], key_server)
        await daemon.listen(core, local, ", ".join(g.name for g in local_gateways))
    loop = asyncio.get_running_loop()
    reloader = _Reloader(config_path, state_dir, options, key_server, endpoints)

    def clock() -> views.Clock:
        return views.Clock(loop.time())

    def registered_members(args: dict[str, Any]) -> object:
        group = args.get("group")
        return server_views.registered_members(
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
                server_views.ipsec_security_associations(key_server, clock())
            ),
            "server-kek-security-associations": lambda args: server_views.kek_security_associations(
                key_server, clock()
            ),
            "reload": lambda args: reloader.reload(),
        },
    )
    daemon.install_signal_handlers()
    loop.add_signal_handler(signal.SIGHUP, reloader.reload_on_signal)
    names = ", ".join(f"{g.name} (group-id {g.group_id})" for g in setup.groups) or "none"
    log.info("key server running; groups: %s", names)
    await daemon.stop.wait()
    await daemon.shutdown()
    return 0


class _Reloader:
    """`groupvpn reload` and SIGHUP: run a new configuration, or keep the old one.

    Everything is read and checked before anything changes, so a refused
    reload leaves the server exactly as it was; the reason goes back to the
    operator (and to the log for SIGHUP).
    """

    def __init__(
        self,
        config_path: Path,
        state_dir: Path,
        options: DaemonOptions,
        key_server: GroupKeyServer,
        endpoints: dict[IPv4Address, IkeEndpoint],
    ) -> None:
        self._config_path = config_path
        self._state_dir = state_dir
        self._options = options
        self._key_server = key_server
        self._endpoints = endpoints

    def reload(self) -> dict[str, object]:
        try:
            setup = load_server_setup(self._config_path)
        except SetupError as exc:
            raise ControlError(
                f"{exc}\nconfiguration not reloaded; still running the previous one"
            ) from exc
        if set(setup.by_local_address) != set(self._endpoints):
            raise ControlError(
                "the key server's local addresses changed (ike gateway local-address): "
                "that needs a restart; configuration not reloaded"
            )
        peers = {
            local: [phase1_peer(gateway, self._options.phase1_doi) for gateway in gateways]
            for local, gateways in setup.by_local_address.items()
        }
        if setup.has_kek and self._key_server.signing_key is None:
            try:
                self._key_server.signing_key = _load_signing_key(self._state_dir)
            except StartupError as exc:
                raise ControlError(f"{exc}; configuration not reloaded") from exc
        try:
            changes = self._key_server.reconfigure(setup.groups)
        except ValueError as exc:
            raise ControlError(f"{exc}; configuration not reloaded") from exc
        for local, endpoint in self._endpoints.items():
            endpoint.set_peers(peers[local])
        for change in changes:
            log.info("configuration reloaded: group %s (group-id %d) %s%s", change.group,
                     change.group_id, change.kind,
                     f": {'; '.join(change.details)}" if change.details else "")  # fmt: skip
        if not changes:
            log.info("configuration reloaded: no group changed")
        return {
            "changes": [
                {"group": c.group, "group-id": c.group_id, "change": c.kind,
                 "details": list(c.details), "rekey-needed": c.needs_rekey}
                for c in changes
            ]
        }  # fmt: skip

    def reload_on_signal(self) -> None:
        log.info("received SIGHUP, reloading %s", self._config_path)
        try:
            self.reload()
        except ControlError as exc:
            log.error("%s", exc)


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
