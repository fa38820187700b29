"""``groupvpn lab up | demo | status | down``: the spec's example in network namespaces."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from functools import partial
from typing import Any

import click

from groupvpn.lab import daemons, demo, topology
from groupvpn.lab.topology import DEFAULT_PREFIX, Lab, LabError

NEEDS_ROOT_STATUS = 2
_PREFIX_KEY = "groupvpn.lab.prefix"

Say = Callable[[str], None]


def _say(quiet_stdout: bool) -> Say:
    return partial(click.echo, err=quiet_stdout)


def _lab(ctx: click.Context) -> Lab:
    """The lab named on the command line, once we know it can be built here."""
    reason = topology.why_not_usable()
    if reason is not None:
        click.echo(reason, err=True)
        sys.exit(NEEDS_ROOT_STATUS)
    try:
        return Lab(ctx.meta.get(_PREFIX_KEY, DEFAULT_PREFIX))
    except LabError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)


@contextmanager
def _errors() -> Iterator[None]:
    try:
        yield
    except LabError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)


def _show(lab: Lab, daemon: str, *words: str, say: Say) -> None:
    """Run ``groupvpn show WORDS --control <lab socket>`` and print it like a shell would."""
    from groupvpn.cli.show import show

    args = [*words, "--control", str(lab.control(daemon))]
    say(f"\n$ groupvpn show {' '.join(args)}")
    with suppress(SystemExit):  # `show` exits 1 after printing why it failed
        show.main(args, prog_name="groupvpn show", standalone_mode=False)


def _show_all(lab: Lab, say: Say) -> None:
    _show(lab, "server", "security", "group-vpn", "server", "registered-members", say=say)
    _show(lab, "server", "security", "group-vpn", "server", "ipsec", "security-associations",
          say=say)  # fmt: skip
    for member in daemons.MEMBERS:
        say(f"\n=============== {member} ===============")
        _show(lab, member, "security", "group-vpn", "member", "ike", "security-associations",
              say=say)  # fmt: skip
        _show(lab, member, "security", "dynamic-policies", say=say)


def _describe_topology(lab: Lab, say: Say) -> None:
    say(f"building the lab: namespaces {lab.prefix}-*, files in {lab.state_dir}")
    for node in topology.NODES:
        addresses = [
            f"{end[1]} {end[2]}"
            for link in topology.LINKS
            for end in (link.a, link.b)
            if end[0] == node
        ]
        if node in topology.LOOPBACK_ADDRESSES:
            addresses.insert(0, f"lo {topology.LOOPBACK_ADDRESSES[node]}")
        say(f"  {lab.ns(node):<18} {node:<8} {', '.join(addresses)}")


def bring_up(lab: Lab, say: Say) -> None:
    """Build the lab and start its daemons; on any failure remove it all again."""
    present = lab.present_namespaces()
    if present or lab.state_dir.exists():
        what = f"namespaces {lab.prefix}-*" if present else str(lab.state_dir)
        raise LabError(
            f"the lab {lab.prefix} is already up ({what} exist); `groupvpn lab status` "
            "shows it, `groupvpn lab down` removes it"
        )
    _describe_topology(lab, say)
    try:
        lab.write_state({"prefix": lab.prefix, "processes": {}})
        topology.build(lab)
        say("starting the core's multicast router, the key server and the members")
        daemons.start_all(lab, say)
        mode = daemons.MEMBER_DATAPLANE
        for member, view in demo.dataplane(lab, timeout=3.0).items():
            say(f"  {member} (--dataplane {mode}) TUN devices: {', '.join(view['tun']) or 'none'}")
    except BaseException:
        say("the lab did not come up; removing what was built")
        topology.teardown(lab)
        raise


@click.group(name="lab")
@click.option(
    "--prefix",
    default=DEFAULT_PREFIX,
    show_default=True,
    help=f"Name prefix of the lab's namespaces (its files go to {topology.STATE_ROOT}/PREFIX); "
    "several labs can run side by side.",
)
@click.pass_context
def lab(ctx: click.Context, prefix: str) -> None:
    """The spec's example network in Linux network namespaces (needs root).

    A key server (20.0.0.1), member1 protecting 10.1.0.0/16 with host1 10.1.1.1
    behind it, member2 protecting 10.2.0.0/16 with host2 10.2.1.1, and a core
    router between them.  See docs/lab.md.
    """
    ctx.meta[_PREFIX_KEY] = prefix


@lab.command()
@click.pass_context
def up(ctx: click.Context) -> None:
    """Build the lab, start the daemons, show registrations and dynamic policies."""
    the_lab = _lab(ctx)
    say = _say(False)
    with _errors():
        bring_up(the_lab, say)
    _show_all(the_lab, say)
    say("\nthe lab is up: `groupvpn lab demo` sends traffic, `groupvpn lab down` removes it;")
    say(f"logs and control sockets are in {the_lab.state_dir}")


@lab.command(name="demo")
@click.option("--count", type=click.IntRange(1, 100), default=5, show_default=True,
              help="Echoes per direction and multicast datagrams.")  # fmt: skip
@click.option("--keep", is_flag=True, help="Leave the lab up afterwards.")
@click.option("--json", "as_json", is_flag=True, help="The result as JSON on stdout.")
@click.pass_context
def demo_command(ctx: click.Context, count: int, keep: bool, as_json: bool) -> None:
    """Bring the lab up (unless it is), send traffic between the hosts, report, tear down.

    host1 and host2 ping each other and host1 sends UDP to 239.1.1.1, which a
    receiver on host2 has joined.  The report says what the core saw (ESP with the
    hosts' own addresses, clear packets between the hosts) and what arrived; the
    exit status is 1 when a check failed.
    """
    the_lab = _lab(ctx)
    say = _say(as_json)
    with _errors():
        try:
            state = status_of(the_lab)["state"]
            if state == "broken":
                raise LabError(
                    f"the lab {the_lab.prefix} is not fully up (`groupvpn lab status` says "
                    "why); `groupvpn lab down` removes it"
                )
            if state == "down":
                bring_up(the_lab, say)
                if not as_json:
                    _show_all(the_lab, say)
            else:
                say(f"using the lab that is up ({the_lab.prefix}-*)")
            say("\nsending traffic between the hosts")
            result = demo.run_traffic(the_lab, count, say)
            if as_json:
                click.echo(json.dumps(result, indent=2, sort_keys=True))
            else:
                click.echo(demo.report(result))
        finally:
            if not keep:
                say("")
                for line in topology.teardown(the_lab):
                    say(f"lab down: {line}")
    sys.exit(0 if result["ok"] else 1)


def status_of(lab: Lab) -> dict[str, Any]:
    present = set(lab.present_namespaces())
    namespaces = {ns: ns in present for ns in lab.namespaces}
    pids = lab.recorded_pids()
    processes = {
        name: {"pid": pids.get(name), "running": bool(pids.get(name))
               and topology.pid_alive(pids[name])}
        for name in daemons.PLACES
    }  # fmt: skip
    members: dict[str, Any] = {}
    registered = daemons.registered_members(lab) if processes["server"]["running"] else {}
    for member in daemons.MEMBERS:
        running = processes[member]["running"]
        members[member] = {
            "registration": daemons.registration_state(lab, member) if running else None,
            "on-server": member in registered,
            "dynamic-policies": [
                f"{p['name']} {p['source']} -> {p['destination']} ({p['from-zone']} -> "
                f"{p['to-zone']})"
                for p in (daemons.installed_policies(lab, member) if running else [])
            ],
            "tun": topology.tun_devices(lab, member) if lab.ns(member) in present else [],
        }
    up = (
        all(namespaces.values())
        and all(p["running"] for p in processes.values())
        and all(m["registration"] == "registered" and m["on-server"] for m in members.values())
    )
    state = "up" if up else ("down" if not present and not lab.state_dir.exists() else "broken")
    return {
        "prefix": lab.prefix,
        "state": state,
        "state-dir": str(lab.state_dir),
        "namespaces": namespaces,
        "processes": processes,
        "members": members,
    }


@lab.command()
@click.option("--json", "as_json", is_flag=True, help="JSON output.")
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Whether the lab is up: namespaces, processes, registrations.  Exit 0 only when up."""
    the_lab = _lab(ctx)
    with _errors():
        view = status_of(the_lab)
    if as_json:
        click.echo(json.dumps(view, indent=2, sort_keys=True))
    else:
        click.echo(f"lab {view['prefix']}: {view['state']}")
        if view["state"] != "down":
            for ns, present in view["namespaces"].items():
                click.echo(f"  namespace {ns:<18} {'present' if present else 'MISSING'}")
            for name, process in view["processes"].items():
                running = f"running, pid {process['pid']}" if process["running"] else "NOT RUNNING"
                click.echo(f"  {name:<8} {running}")
            for name, member in view["members"].items():
                click.echo(
                    f"  {name}: registration {member['registration'] or '-'}, "
                    f"{'listed' if member['on-server'] else 'not listed'} by the key server, "
                    f"{len(member['dynamic-policies'])} dynamic policies, "
                    f"TUN: {', '.join(member['tun']) or 'none'}"
                )
            click.echo(f"  logs and control sockets: {view['state-dir']}")
    sys.exit(0 if view["state"] == "up" else 1)


@lab.command()
@click.pass_context
def down(ctx: click.Context) -> None:
    """Stop the lab's processes and delete its namespaces and files (safe to repeat)."""
    the_lab = _lab(ctx)
    with _errors():
        removed = topology.teardown(the_lab)
    for line in removed:
        click.echo(line)
    if not removed:
        click.echo(f"lab {the_lab.prefix}: nothing to remove")
