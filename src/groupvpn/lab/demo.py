"""The demo's traffic: unicast both ways and multicast between the hosts, watched at the core.

Captures run on the core (every packet arriving on its links) and on both hosts,
a receiver joined to 239.1.1.1 waits on host2; then host1 pings host2, host2 pings
host1, and host1 sends UDP to 239.1.1.1.  The result says what the core saw (ESP
that keeps the hosts' own addresses, clear packets between the hosts, anything
else), what arrived at each host, and which of the demo's checks held.  Nothing is
assumed: a member without a data plane forwards the hosts' packets in clear (it is
an ordinary router), and the result says so.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from groupvpn.lab.daemons import control, member_dataplane
from groupvpn.lab.topology import (
    HOST1,
    HOST2,
    MULTICAST_GROUP,
    Lab,
    LabError,
    in_ns,
    ip,
    run,
    tun_devices,
)

MULTICAST_PORT = 5001
HOSTS = {"host1": HOST1, "host2": HOST2}
MEMBERS_OF = {"member1": (HOST1, HOST2), "member2": (HOST2, HOST1)}


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


def route_device(lab: Lab, member: str) -> str | None:
    """The device ``member`` forwards its host's packets to the other host through."""
    source, destination = MEMBERS_OF[member]
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
            for member in MEMBERS_OF
        }
        ready = all(v["tun"] and v["route"] in v["tun"] for v in view.values())
        if ready or time.monotonic() > deadline:
            return view
        time.sleep(0.1)


def run_traffic(lab: Lab, count: int = 5, say: Callable[[str], None] = print) -> dict[str, Any]:
    """Send the demo's traffic; the raw observations (see ``evaluate``)."""
    result: dict[str, Any] = {
        "count": count,
        "member-dataplane": member_dataplane(),
        "dataplane": dataplane(lab),
    }
    background: list[Background] = []
    try:
        captures = {
            node: Background.start(lab, node, "capture") for node in ("core", "host1", "host2")
        }
        background += captures.values()
        receiver = Background.start(lab, "host2", "mcast-recv", HOST2, MULTICAST_GROUP,
                                    str(MULTICAST_PORT))  # fmt: skip
        background.append(receiver)
        say(f"  ping {HOST1} -> {HOST2} (host1 -> host2), {count} echoes")
        result["ping"] = {
            "host1->host2": probe(lab, "host1", "ping", HOST1, HOST2, "--count", str(count)),
        }
        say(f"  ping {HOST2} -> {HOST1} (host2 -> host1), {count} echoes")
        result["ping"]["host2->host1"] = probe(
            lab, "host2", "ping", HOST2, HOST1, "--count", str(count)
        )
        say(f"  UDP {HOST1} -> {MULTICAST_GROUP}:{MULTICAST_PORT} (host1 -> the group), "
            f"{count} datagrams")  # fmt: skip
        sent = probe(lab, "host1", "mcast-send", HOST1, MULTICAST_GROUP, str(MULTICAST_PORT),
                     "--count", str(count))  # fmt: skip
        time.sleep(0.5)  # the last datagram's way through both members
        background.remove(receiver)
        result["multicast"] = {"sent": sent, "received": receiver.stop()}
        result["captures"] = {}
        for node, capture in captures.items():
            background.remove(capture)
            result["captures"][node] = capture.stop()["flows"]
        result["member-statistics"] = {
            member: control(lab, member, "member-dataplane-statistics") for member in MEMBERS_OF
        }
    finally:
        for process in background:
            process.process.kill()
            process.process.communicate()
    return evaluate(result)


def _between_hosts(flow: dict[str, Any]) -> bool:
    return flow["source"] in HOSTS.values() and (
        flow["destination"] in HOSTS.values() or flow["destination"] == MULTICAST_GROUP
    )


def evaluate(result: dict[str, Any]) -> dict[str, Any]:
    """Add the core's summary and the demo's checks to the observations."""
    count = result["count"]
    esp: dict[str, int] = {}
    clear: dict[str, int] = {}
    for flow in result["captures"]["core"]:
        key = f"{flow['source']} > {flow['destination']}"
        if not _between_hosts(flow):
            continue
        table = esp if flow["protocol"] == "esp" else clear
        table[key] = table.get(key, 0) + flow["packets"]
    result["core"] = {"esp": esp, "clear": clear}
    pings = result["ping"]
    multicast = result["multicast"]
    checks = []
    for source, destination, need in (
        (HOST1, HOST2, count), (HOST2, HOST1, count), (HOST1, MULTICAST_GROUP, 1)
    ):  # fmt: skip
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
    received = multicast["received"]["received"]
    checks.append({
        "check": f"multicast host1 -> {MULTICAST_GROUP} delivered to host2",
        "ok": received == multicast["sent"]["sent"],
        "detail": f"{received}/{multicast['sent']['sent']} received",
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


def report(result: dict[str, Any]) -> str:
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
    sent, received = result["multicast"]["sent"], result["multicast"]["received"]
    lines.append(
        f"  UDP {sent['source']} -> {sent['group']}:{sent['port']}: {sent['sent']} sent, "
        f"{received['received']} received on host2"
    )
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
    for host in ("host1", "host2"):
        lines += ["", f"== what arrived at {host} ({HOSTS[host]})"]
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
