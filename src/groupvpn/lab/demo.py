"""The demo's traffic: unicast both ways and multicast between the hosts, watched at the core.

Captures run on the core (every packet arriving on its links) and on both hosts,
a receiver joined to 239.1.1.1 waits on host2; then host1 pings host2, host2 pings
host1, and host1 sends UDP to 239.1.1.1.  The result says what the core saw (ESP
that keeps the hosts' own addresses, clear packets between the hosts, anything
else), what arrived at each host, and which of the demo's checks held.  Nothing is
assumed: a member without a data plane forwards the hosts' packets in clear (it is
an ordinary router), and the result says so.

That is the spec lab; in a lab of more sites every host pings every other one, the
first host sends to the lab's multicast group and every other host receives it
(``multicast.received`` is the first receiver's count, ``multicast.others`` the rest).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from itertools import permutations
from typing import Any

from groupvpn.lab.daemons import MEMBER_DATAPLANE, control
from groupvpn.lab.layout import SPEC_LAB, LabTopology, Site
from groupvpn.lab.topology import Lab, LabError, in_ns, ip, run, tun_devices

MULTICAST_PORT = 5001


def probe_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "groupvpn.lab.probe", *args]


@dataclass
class Background:
    """A long-running probe (capture, receiver): started, ready, stopped with SIGTERM."""

    name: str
    process: subprocess.Popen[str]

    @classmethod
    def start(cls, lab: Lab, node: str, *args: str) -> Background:
        process = subprocess.Popen(
            in_ns(lab.ns(node), probe_argv(*args)),
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        if line != "ready":
            process.kill()
            _, err = process.communicate()
            raise LabError(f"{args[0]} in {node} did not start: {err.strip() or line}")
        return cls(f"{args[0]} in {node}", process)

    def stop(self) -> Any:
        self.process.send_signal(signal.SIGTERM)
        try:
            out, err = self.process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.communicate()
            raise LabError(f"{self.name} did not stop") from None
        try:
            return json.loads(out.strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise LabError(f"{self.name} gave no result: {err.strip()}") from None


def probe(lab: Lab, node: str, *args: str) -> Any:
    out = run(in_ns(lab.ns(node), probe_argv(*args)), timeout=60)
    return json.loads(out.strip().splitlines()[-1])


def _next_site(topology: LabTopology, member: str) -> Site:
    """The site after ``member``'s (the first after the last): "the other host"'s."""
    sites = topology.sites
    return sites[(sites.index(topology.site(member)) + 1) % len(sites)]


def route_device(lab: Lab, member: str) -> str | None:
    """The device ``member`` forwards its host's packets to the other host through."""
    source = lab.topology.site(member).host_address
    destination = _next_site(lab.topology, member).host_address
    out = ip("-n", lab.ns(member), "-j", "route", "get", destination, "from", source,
             "iif", "lan0", check=False)  # fmt: skip
    try:
        routes = json.loads(out or "[]")
    except ValueError:
        return None
    return str(routes[0].get("dev")) if routes else None


def dataplane(lab: Lab, timeout: float = 3.0) -> dict[str, Any]:
    """Each member's TUN devices and where it routes its host's traffic; waits up to
    ``timeout`` s for the TUNs (and routes into them) of a data plane that is starting."""
    deadline = time.monotonic() + timeout
    while True:
        view = {
            member: {"tun": tun_devices(lab, member), "route": route_device(lab, member)}
            for member in lab.topology.members
        }
        ready = all(v["tun"] and v["route"] in v["tun"] for v in view.values())
        if ready or time.monotonic() > deadline:
            return view
        time.sleep(0.1)


def run_traffic(lab: Lab, count: int = 5, say: Callable[[str], None] = print) -> dict[str, Any]:
    """Send the demo's traffic; the raw observations (see ``evaluate``)."""
    topology = lab.topology
    sender, group, port = topology.multicast_sender, topology.multicast_group, str(MULTICAST_PORT)
    result: dict[str, Any] = {
        "count": count,
        "member-dataplane": MEMBER_DATAPLANE,
        "dataplane": dataplane(lab),
    }
    background: list[Background] = []
    try:
        captures = {
            node: Background.start(lab, node, "capture") for node in ("core", *topology.hosts)
        }
        background += captures.values()
        receivers = {
            site.host: Background.start(lab, site.host, "mcast-recv", site.host_address, group,
                                        port)
            for site in topology.sites if site is not sender
        }  # fmt: skip
        background += receivers.values()
        result["ping"] = {}
        for a, b in permutations(topology.sites, 2):
            say(f"  ping {a.host_address} -> {b.host_address} ({a.host} -> {b.host}), "
                f"{count} echoes")  # fmt: skip
            result["ping"][f"{a.host}->{b.host}"] = probe(
                lab, a.host, "ping", a.host_address, b.host_address, "--count", str(count)
            )
        say(f"  UDP {sender.host_address} -> {group}:{port} ({sender.host} -> the group), "
            f"{count} datagrams")  # fmt: skip
        sent = probe(lab, sender.host, "mcast-send", sender.host_address, group, port,
                     "--count", str(count))  # fmt: skip
        time.sleep(0.5)  # the last datagram's way through both members
        received = {}
        for host, receiver in receivers.items():
            background.remove(receiver)
            received[host] = receiver.stop()
        first, *others = received
        result["multicast"] = {"sent": sent, "received": received[first]}
        if others:
            result["multicast"]["others"] = {host: received[host] for host in others}
        result["captures"] = {}
        for node, capture in captures.items():
            background.remove(capture)
            result["captures"][node] = capture.stop()["flows"]
        result["member-statistics"] = {
            member: control(lab, member, "member-dataplane-statistics")
            for member in topology.members
        }
    finally:
        for process in background:
            process.process.kill()
            process.process.communicate()
    return evaluate(result, topology)


def _between_hosts(flow: dict[str, Any], topology: LabTopology) -> bool:
    hosts = topology.host_addresses.values()
    return flow["source"] in hosts and (
        flow["destination"] in hosts or flow["destination"] == topology.multicast_group
    )


def multicast_received(result: dict[str, Any], topology: LabTopology = SPEC_LAB) -> dict[str, Any]:
    """Receiving host -> its receiver's result (``received``: datagrams that arrived)."""
    multicast = result["multicast"]
    first, *others = (s.host for s in topology.sites if s is not topology.multicast_sender)
    return {first: multicast["received"],
            **{host: multicast.get("others", {})[host] for host in others}}  # fmt: skip


def evaluate(result: dict[str, Any], topology: LabTopology = SPEC_LAB) -> dict[str, Any]:
    """Add the core's summary and the demo's checks to the observations."""
    count = result["count"]
    sender, group = topology.multicast_sender, topology.multicast_group
    esp: dict[str, int] = {}
    clear: dict[str, int] = {}
    for flow in result["captures"]["core"]:
        key = f"{flow['source']} > {flow['destination']}"
        if not _between_hosts(flow, topology):
            continue
        table = esp if flow["protocol"] == "esp" else clear
        table[key] = table.get(key, 0) + flow["packets"]
    result["core"] = {"esp": esp, "clear": clear}
    pings = result["ping"]
    multicast = result["multicast"]
    checks = []
    flows = [(a.host_address, b.host_address, count) for a, b in permutations(topology.sites, 2)]
    for source, destination, need in (*flows, (sender.host_address, group, 1)):
        seen = esp.get(f"{source} > {destination}", 0)
        checks.append({
            "check": f"core saw ESP {source} > {destination} (the hosts' own addresses)",
            "ok": seen >= need, "detail": f"{seen} packets",
        })  # fmt: skip
    clear_total = sum(clear.values())
    checks.append({
        "check": "core saw no clear packet between the hosts",
        "ok": clear_total == 0,
        "detail": ", ".join(f"{k}: {n}" for k, n in sorted(clear.items())) or "none",
    })  # fmt: skip
    for direction, view in pings.items():
        checks.append({
            "check": f"unicast {direction} delivered (ping {view['source']} -> "
                     f"{view['destination']} answered)",
            "ok": view["received"] == view["sent"] and view["sent"] > 0,
            "detail": f"{view['received']}/{view['sent']} answered",
        })  # fmt: skip
    for host, view in multicast_received(result, topology).items():
        checks.append({
            "check": f"multicast {sender.host} -> {group} delivered to {host}",
            "ok": view["received"] == multicast["sent"]["sent"],
            "detail": f"{view['received']}/{multicast['sent']['sent']} received",
        })  # fmt: skip
    result["checks"] = checks
    result["ok"] = all(check["ok"] for check in checks)
    return result


# -- the report ------------------------------------------------------------------------------


def _flow_lines(flows: list[dict[str, Any]], indent: str = "    ") -> list[str]:
    if not flows:
        return [f"{indent}(nothing)"]
    return [
        f"{indent}{f['interface']:<11} {f['protocol']:<5} {f['source']:>15} > "
        f"{f['destination']:<15} {f['detail']:<15} {f['packets']:>4}"
        for f in flows
    ]


def _counters(view: Any, path: str = "") -> list[tuple[str, Any]]:
    """The non-zero numbers of a nested statistics view, as (dotted.name, value)."""
    if isinstance(view, dict):
        return [
            item
            for key, value in sorted(view.items())
            for item in _counters(value, f"{path}.{key}" if path else str(key))
        ]
    if isinstance(view, int | float) and not isinstance(view, bool) and view:
        return [(path, view)]
    return []


def report(result: dict[str, Any], topology: LabTopology = SPEC_LAB) -> str:
    lines = ["", f"== data plane (the members run with --dataplane {result['member-dataplane']})"]
    for member, view in result["dataplane"].items():
        tun = ", ".join(view["tun"]) or "none"
        lines.append(
            f"  {member}: TUN devices: {tun}; its host's packets to the other host leave "
            f"through {view['route'] or '?'}"
        )
    if not any(view["tun"] for view in result["dataplane"].values()):
        lines.append(
            "  (no TUN device: the member daemon runs without a data plane, so the members "
            "forward the hosts' packets as plain routers)"
        )
    lines += ["", "== what was sent"]
    for view in result["ping"].values():
        lines.append(
            f"  ping {view['source']} -> {view['destination']}: {view['sent']} sent, "
            f"{view['received']} answered"
            + (f", errors {view['errors']}" if view.get("errors") else "")
        )
    sent = result["multicast"]["sent"]
    lines.append(
        f"  UDP {sent['source']} -> {sent['group']}:{sent['port']}: {sent['sent']} sent, "
        + ", ".join(f"{view['received']} received on {host}"
                    for host, view in multicast_received(result, topology).items())
    )  # fmt: skip
    lines += ["", "== what the core saw (packets arriving on its links)"]
    lines += _flow_lines(result["captures"]["core"])
    esp, clear = result["core"]["esp"], result["core"]["clear"]
    lines.append(
        f"  ESP keeping the hosts' addresses: {sum(esp.values())} "
        f"({', '.join(f'{k}: {n}' for k, n in sorted(esp.items())) or 'none'})"
    )
    lines.append(
        f"  clear packets between the hosts: {sum(clear.values())} "
        f"({', '.join(f'{k}: {n}' for k, n in sorted(clear.items())) or 'none'})"
    )
    for host, address in topology.host_addresses.items():
        lines += ["", f"== what arrived at {host} ({address})"]
        lines += _flow_lines(result["captures"][host])
    statistics = result.get("member-statistics") or {}
    if any(statistics.values()):
        lines += ["", "== the members' data plane statistics (member-dataplane-statistics)"]
        for member, view in statistics.items():
            counters = ", ".join(f"{k} {v}" for k, v in _counters(view))
            counters = (
                counters or f"no counter above zero: {json.dumps(view, sort_keys=True)[:200]}"
            )
            lines.append(f"  {member}: {counters}")
    lines += ["", "== checks"]
    for check in result["checks"]:
        lines.append(f"  {'ok  ' if check['ok'] else 'FAIL'}  {check['check']}: {check['detail']}")
    verdict = (
        "every check held"
        if result["ok"]
        else f"{sum(not c['ok'] for c in result['checks'])} of {len(result['checks'])} "
        "checks failed"
    )
    lines.append(f"  => {verdict}")
    return "\n".join(lines)
