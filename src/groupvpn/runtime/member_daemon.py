"""``groupvpn member``: registers each configured group VPN with its key server.

With group VPNs configured it runs until SIGTERM/SIGINT, registering (and
registering again after failures, with backoff) and answering `show` and
`clear` on its control socket.  With IKE gateways only, it checks phase 1 to
each and stops: exit 0 if every one came up.

``--dataplane none`` (the only data plane so far) keeps keys and dynamic
policies in the control plane without forwarding packets.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

from groupvpn.config.model import IkeGateway
from groupvpn.ike.events import IkeSaEstablished, IkeSaFailed
from groupvpn.member.core import GroupVpn, MemberCore, Registered
from groupvpn.member.keys import GroupSa
from groupvpn.runtime import member_views, views
from groupvpn.runtime.base import Daemon, DaemonOptions, group_by_local_address
from groupvpn.runtime.control import DEFAULT_MEMBER_SOCKET

log = logging.getLogger("groupvpn")

#: Given the group SAs of one registration, which to install and the dynamic-policy view.
PolicyFilter = Callable[[str, list[GroupSa]], tuple[list[GroupSa], list[dict[str, Any]]]]


def install_all(vpn: str, sas: list[GroupSa]) -> tuple[list[GroupSa], list[dict[str, Any]]]:
    """No scope policies known: install every group SA, report no dynamic policies."""
    return sas, []


async def run_member(
    gateways: Sequence[IkeGateway],
    vpns: Sequence[GroupVpn],
    options: DaemonOptions,
    policy_filter: PolicyFilter = install_all,
) -> int:
    if not vpns:
        return await _check_phase1(gateways, options)
    daemon = Daemon(options)
    daemon.open_debug_keys()
    loop = asyncio.get_running_loop()
    cores: list[MemberCore] = []
    installed: dict[str, list[GroupSa]] = {}
    dynamic: dict[str, list[dict[str, Any]]] = {}

    def on_registered(event: object) -> None:
        if not isinstance(event, Registered):
            return
        # The core took the registration only if every SA TEK and the KEK are usable.
        sas = list(event.sas)
        accepted, policies = policy_filter(event.vpn, sas)
        installed[event.vpn], dynamic[event.vpn] = accepted, policies
        rejected = len(sas) - len(accepted)
        log.info(
            "group SAs installed: vpn=%s installed=%d rejected=%d dynamic-policies=%d",
            event.vpn, len(accepted), rejected, len(policies),
        )  # fmt: skip

    daemon.listeners.append(on_registered)
    for local, local_gateways in group_by_local_address(gateways).items():
        names = {g.name for g in local_gateways}
        local_vpns = [vpn for vpn in vpns if vpn.gateway in names]
        if not local_vpns:
            continue
        endpoint = daemon.new_endpoint(local, local_gateways)
        core = MemberCore(
            endpoint, local_vpns, options.dialect,
            retransmit_interval=options.retransmit_interval,
            retransmit_limit=options.retransmit_limit,
        )  # fmt: skip
        cores.append(core)
        await daemon.listen(core, local, ", ".join(sorted(names)))

    def clock() -> views.Clock:
        return views.Clock(loop.time())

    def clear(args: dict[str, Any]) -> object:
        installed.clear()
        dynamic.clear()
        for core in cores:
            core.clear(loop.time())
        daemon.pump_all()
        log.info("group SAs cleared by operator; registering again")
        return None

    await daemon.start_control(
        DEFAULT_MEMBER_SOCKET,
        {
            "member-ike-security-associations": lambda args: member_views.ike_security_associations(
                cores, clock()
            ),
            "member-ipsec-security-associations": lambda args: (
                member_views.ipsec_security_associations(
                    [sa for sas in installed.values() for sa in sas], clock()
                )
            ),
            "member-kek-security-associations": lambda args: member_views.kek_security_associations(
                [kek for core in cores for kek in core.keks()], clock()
            ),
            "dynamic-policies": lambda args: {
                "dynamic-policies": [p for ps in dynamic.values() for p in ps]
            },
            "clear-member-ipsec-security-associations": clear,
            # Without its KEK a member cannot follow rekeys: it registers again too.
            "clear-member-kek-security-associations": clear,
        },
    )
    daemon.install_signal_handlers()
    log.info("member running; group VPNs: %s", ", ".join(v.name for v in vpns))
    daemon.pump_all()  # start registering (each VPN's first timer is due now)
    await daemon.stop.wait()
    await daemon.shutdown()
    return 0


async def _check_phase1(gateways: Sequence[IkeGateway], options: DaemonOptions) -> int:
    """No group VPN configured: bring up phase 1 to every gateway, then stop."""
    daemon = Daemon(options)
    daemon.open_debug_keys()
    outcome: dict[str, bool] = {}
    all_done = asyncio.Event()

    def track(event: object) -> None:
        # Only our own negotiations decide the outcome: a refused stray first
        # message from the key server's address is not our SA failing.
        if isinstance(event, IkeSaEstablished) and event.sa.role == "initiator":
            outcome.setdefault(event.sa.gateway, True)
        elif isinstance(event, IkeSaFailed) and event.role == "initiator":
            outcome.setdefault(event.gateway, False)
        if len(outcome) == len(gateways):
            all_done.set()

    daemon.listeners.append(track)
    loop = asyncio.get_running_loop()
    for local, local_gateways in group_by_local_address(gateways).items():
        endpoint = daemon.new_endpoint(local, local_gateways)
        await daemon.listen(endpoint, local, ", ".join(g.name for g in local_gateways))
        for gateway in local_gateways:
            log.info(
                "initiating IKE Phase 1 to %s (gateway %s)", gateway.addresses[0], gateway.name
            )
            endpoint.initiate(gateway.name, loop.time())
    daemon.pump_all()
    daemon.install_signal_handlers()
    stop_wait = asyncio.ensure_future(daemon.stop.wait())
    done_wait = asyncio.ensure_future(all_done.wait())
    await asyncio.wait({stop_wait, done_wait}, return_when=asyncio.FIRST_COMPLETED)
    stop_wait.cancel()
    done_wait.cancel()
    if all_done.is_set():
        log.info(
            "Phase 1 complete for %d gateway(s); no group VPN configured "
            "([edit security group-vpn member ipsec vpn]), stopping",
            len(gateways),
        )
    await daemon.shutdown()
    return 0 if len(outcome) == len(gateways) and all(outcome.values()) else 1
