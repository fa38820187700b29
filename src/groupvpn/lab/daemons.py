"""Starting the lab's processes inside its namespaces and waiting until they work.

Each runs as ``ip netns exec NS python -m ...`` in a session of its own, so it
outlives the ``groupvpn lab up`` that started it; its output goes to
``<state dir>/<name>.log`` and its pid into the state file.  The key server and the
members get their configuration, control socket (and the server its state
directory) in the state dir, so ``groupvpn show ... --control <state dir>/NAME.sock``
works from anywhere on the host.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from groupvpn.lab.configs import all_configs
from groupvpn.lab.layout import SPEC_LAB, LabTopology
from groupvpn.lab.topology import Lab, LabError, in_ns, pid_alive, terminate
from groupvpn.runtime.control import ControlError, call

#: The members forward the group's traffic through ESP (docs/dataplane.md).
MEMBER_DATAPLANE = "linux"


def places(topology: LabTopology) -> dict[str, str]:
    """Each process of a lab with ``topology``, and the node it runs in."""
    return {"mrouter": "core", "server": "server", **{m: m for m in topology.members}}


#: The spec lab's members and processes (``groupvpn lab``'s).
MEMBERS = SPEC_LAB.members
PLACES = places(SPEC_LAB)


def core_interfaces(topology: LabTopology = SPEC_LAB) -> list[str]:
    return [name for name, _ in topology.interfaces("core")]


def argv(lab: Lab, name: str, extra: Sequence[str] = ()) -> list[str]:
    """The command line of process ``name``; a member's gets its site's
    ``member_options``, then ``extra``."""
    python = [sys.executable, "-m"]
    if name == "mrouter":
        return [*python, "groupvpn.lab.mrouter", "--lab", str(lab.state_dir),
                *core_interfaces(lab.topology)]  # fmt: skip
    role = "server" if name == "server" else "member"
    command = [*python, "groupvpn", role, "-c", str(lab.config(name)),
               "--control", str(lab.control(name)), "--dialect", lab.topology.dialect]  # fmt: skip
    if role == "server":
        command += ["--state-dir", str(lab.state_dir / "server-state")]
    else:
        command += ["--dataplane", MEMBER_DATAPLANE]
        command += [*lab.topology.site(name).member_options, *extra]
    return command


def write_configs(lab: Lab) -> None:
    lab.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    for name, text in all_configs(lab.topology).items():
        lab.config(name).write_text(text)


def start(lab: Lab, name: str, extra: Sequence[str] = ()) -> int:
    """Start process ``name`` in its namespace; its pid (``ip netns exec`` execs it).

    ``extra``: more options for a member (see :func:`argv`)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(lab.log(name), "ab") as log:
        process = subprocess.Popen(
            in_ns(lab.ns(places(lab.topology)[name]), argv(lab, name, extra)),
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            env=env, start_new_session=True,
        )  # fmt: skip
    # The lab's state file owns it from here; `down` stops it by pid.
    process.returncode = 0
    state = lab.read_state()
    processes = state.get("processes")
    processes = dict(processes) if isinstance(processes, dict) else {}
    processes[name] = process.pid
    state["processes"] = processes
    lab.write_state(state)
    return process.pid


def log_tail(lab: Lab, name: str, lines: int = 15) -> str:
    try:
        text = lab.log(name).read_text(errors="replace")
    except FileNotFoundError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def wait_until(lab: Lab, name: str, ready: Callable[[], Any], what: str, timeout: float) -> Any:
    """Poll ``ready()`` until it is truthy; fail early if process ``name`` died."""
    pid = lab.recorded_pids().get(name)
    deadline = time.monotonic() + timeout
    while True:
        value = ready()
        if value:
            return value
        if pid is not None and not pid_alive(pid):
            raise LabError(f"{name} exited before {what}; its log:\n{log_tail(lab, name)}")
        if time.monotonic() > deadline:
            raise LabError(
                f"{name}: not {what} after {timeout:g} s; its log:\n{log_tail(lab, name)}"
            )
        time.sleep(0.1)


def log_has(lab: Lab, name: str, text: str) -> Callable[[], bool]:
    def check() -> bool:
        try:
            return text in lab.log(name).read_text(errors="replace")
        except FileNotFoundError:
            return False

    return check


def control(lab: Lab, name: str, command: str) -> Any:
    """A control-socket call to daemon ``name``; None when it does not answer."""
    try:
        return call(lab.control(name), command, {})
    except ControlError:
        return None


def registered_members(lab: Lab) -> dict[str, Any]:
    """The key server's registered members, by lab name (member1, member2, ...)."""
    view = control(lab, "server", "server-registered-members")
    if not isinstance(view, dict):
        return {}
    by_address = {site.member_address: site.member for site in lab.topology.sites}
    found = {}
    for group in view.get("groups", []):
        for member in group.get("members", []):
            name = by_address.get(member.get("address"))
            if name is not None:
                found[name] = member
    return found


def registration_state(lab: Lab, member: str) -> str | None:
    """The member's registration state for its group VPN (``registered``, ...)."""
    view = control(lab, member, "member-ike-security-associations")
    if not isinstance(view, dict):
        return None
    for registration in view.get("registrations", []):
        state = registration.get("state")
        return str(state) if state is not None else None
    return None


def installed_policies(lab: Lab, member: str) -> list[dict[str, Any]]:
    view = control(lab, member, "dynamic-policies")
    if not isinstance(view, dict):
        return []
    return [p for p in view.get("dynamic-policies", []) if p.get("installed")]


def _registered(lab: Lab, member: str) -> Callable[[], bool]:
    return lambda: registration_state(lab, member) == "registered"


def start_all(lab: Lab, say: Callable[[str], None], timeout: float = 40.0) -> None:
    """The core's multicast router, the key server, then every member; until registered."""
    members = lab.topology.members
    write_configs(lab)
    start(lab, "mrouter")
    wait_until(lab, "mrouter", log_has(lab, "mrouter", "multicast router running"),
               "routing multicast", 10)  # fmt: skip
    start(lab, "server")
    wait_until(lab, "server", log_has(lab, "server", "key server running"), "running", timeout)
    for member in members:
        start(lab, member)
    say("  waiting for the members to register ...")
    started = time.monotonic()
    for member in members:
        wait_until(lab, member, _registered(lab, member), "registered", timeout)
        say(f"  {member} registered ({time.monotonic() - started:.1f} s)")
    listing = "listing both members" if len(members) == 2 else "listing every member"
    wait_until(lab, "server", lambda: set(registered_members(lab)) == set(members),
               listing, timeout)  # fmt: skip


def stop(lab: Lab, name: str) -> None:
    """Stop process ``name`` (SIGTERM, by its recorded pid) and wait until it is gone."""
    pid = lab.recorded_pids().get(name)
    if pid is not None and terminate([pid]):
        raise LabError(f"{name} (pid {pid}) did not stop")


def restart_member(lab: Lab, member: str, extra: Sequence[str] = (),
                   timeout: float = 40.0) -> int:  # fmt: skip
    """Stop ``member`` and start it again with ``extra`` options; once registered, its pid."""
    stop(lab, member)
    pid = start(lab, member, extra)
    wait_until(lab, member, _registered(lab, member), "registered", timeout)
    return pid
