"""A long-running process (optionally inside a network namespace) with its output in a file.

Meant for our own daemons, e.g.::

    gw = pair.daemon(   # == daemon_in(pair, ...): started now, stopped at teardown
        pair.b,
        groupvpn_argv("server", conf, debug_keys=tmp_path / "keys"),
        tmp_path / "server.log",
    )
    m = gw.wait_for_line(IKE_SA_UP, timeout=10)
    assert m["mode"] == "main"
    gw.stop()

It can also be used on its own (``netns=None`` runs on the host) as a context
manager.

``stdout`` and ``stderr`` both go to ``log_path``; ``wait_for_line`` scans that
file.  ``stop`` sends SIGTERM, waits, then SIGKILL (by PID only).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from tests.interop import netns

#: What our daemons log when an IKE SA comes up / fails (named groups).
IKE_SA_UP = re.compile(
    r"IKE SA up: peer=(?P<peer>\S+) gateway=(?P<gateway>\S+) role=(?P<role>\S+)"
    r" mode=(?P<mode>\S+) encryption=(?P<encryption>\S+) hash=(?P<hash>\S+)"
    r" dh-group=(?P<dh_group>\S+) lifetime=(?P<lifetime>\d+)s"
    r" cookies=(?P<icookie>[0-9a-f]{16}):(?P<rcookie>[0-9a-f]{16})"
)
IKE_SA_FAILED = re.compile(
    r"IKE SA failed: peer=(?P<peer>\S+) gateway=(?P<gateway>\S+) role=(?P<role>\S+)"
    r" mode=(?P<mode>\S+)(?: notify=(?P<notify>\S+))? reason=(?P<reason>.*)$"
)


def groupvpn_argv(
    role: str,
    conf: str | os.PathLike[str],
    *,
    port: int = 500,
    debug_keys: str | os.PathLike[str] | None = None,
    extra: Sequence[str] = (),
) -> list[str]:
    """Command line of our daemon: ``role`` is ``"server"`` or ``"member"``."""
    # Each daemon gets its own control socket next to its configuration, so tests
    # never touch /run/groupvpn or each other.
    control = Path(conf).with_suffix(".sock")
    argv = [
        sys.executable, "-m", "groupvpn", role, "-c", str(conf), "--port", str(port),
        "--control", str(control),
    ]  # fmt: skip
    if role == "server" and "--state-dir" not in extra:
        # Likewise a state directory of its own, never /var/lib/groupvpn.
        argv += ["--state-dir", str(Path(conf).with_suffix(".state"))]
    if debug_keys is not None:
        argv += ["--debug-keys", str(debug_keys)]
    return [*argv, *extra]


class DaemonError(AssertionError):
    """A daemon did not behave as expected (exited early, line not seen, ...)."""


def read_debug_keys(
    path: str | os.PathLike[str], *, require_private: bool = True
) -> list[tuple[str, str]]:
    """Parse a ``--debug-keys`` file: one ``icookie_hex,ka_hex`` per line.

    With ``require_private`` (the default) the file must not be accessible to
    group or others (our daemons write it with mode 0600).  The result goes
    straight to :func:`tests.interop.tshark.decode` as ``keys``.
    """
    mode = os.stat(path).st_mode & 0o777
    if require_private and mode & 0o077:
        raise AssertionError(f"{path} has mode {mode:04o}, expected no group/other access")
    keys: list[tuple[str, str]] = []
    for raw in Path(path).read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        icookie, ka = (part.strip().lower() for part in line.split(",", 1))
        if not re.fullmatch(r"[0-9a-f]{16}", icookie) or not re.fullmatch(r"(?:[0-9a-f]{2})+", ka):
            raise ValueError(f"bad debug-keys line in {path}: {raw!r}")
        keys.append((icookie, ka))
    return keys


class DaemonProcess:
    """Start ``argv`` (inside ``netns`` if given) with stdout+stderr captured to ``log_path``."""

    def __init__(
        self,
        argv: Sequence[str],
        log_path: str | os.PathLike[str],
        *,
        netns: str | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        name: str | None = None,
    ) -> None:
        self.argv = list(argv)
        self.log_path = Path(log_path)
        self.netns = netns
        self.env = dict(os.environ if env is None else env)
        # Our daemons are Python: make sure nothing sits in a stdio buffer.
        self.env.setdefault("PYTHONUNBUFFERED", "1")
        self.cwd = cwd
        self.name = name or Path(self.argv[0]).name
        self.proc: subprocess.Popen[bytes] | None = None

    # -- lifecycle ---------------------------------------------------------------

    def start(self) -> Self:
        if self.proc is not None:
            raise RuntimeError(f"{self.name} already started")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as log:
            self.proc = netns.run_in(
                self.netns,
                self.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.cwd,
                # own session: a Ctrl-C meant for pytest does not reach it
                start_new_session=True,
            )
        return self

    def __enter__(self) -> Self:
        if self.proc is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def popen(self) -> subprocess.Popen[bytes]:
        if self.proc is None:
            raise RuntimeError(f"{self.name} not started")
        return self.proc

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def returncode(self) -> int | None:
        """Exit status (negative signal number if killed), ``None`` while running."""
        return None if self.proc is None else self.proc.poll()

    def is_alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def send_signal(self, sig: int) -> None:
        """Send ``sig`` to the daemon's PID (no-op if it already exited)."""
        if self.is_alive():
            self.popen.send_signal(sig)

    def wait(self, timeout: float) -> int:
        """Wait for the daemon to exit on its own; returns its exit status."""
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            raise DaemonError(f"{self.name} still running after {timeout}s") from None

    def stop(self, timeout: float = 5.0) -> int | None:
        """SIGTERM, wait up to ``timeout`` s, then SIGKILL; returns the exit status."""
        if self.proc is None:
            return None
        return netns.terminate_process(self.proc, timeout)

    # -- log ---------------------------------------------------------------------

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_offset(self) -> int:
        """Current log length in characters; pass to ``wait_for_line(since=...)``."""
        return len(self.log_text())

    def wait_for_line(
        self,
        regex: str | re.Pattern[str],
        timeout: float = 10.0,
        *,
        since: int = 0,
        poll: float = 0.02,
    ) -> re.Match[str]:
        """Wait until a log line (at or after character ``since``) matches ``regex``.

        Returns the match (``re.search`` on that one line).  Raises
        :class:`DaemonError`, with the log tail, on timeout or if the daemon
        exits without printing a matching line.
        """
        pattern = re.compile(regex) if isinstance(regex, str) else regex
        deadline = time.monotonic() + timeout
        while True:
            exited = not self.is_alive()  # check *before* reading: no lost last line
            text = self.log_text()[since:]
            # only complete lines, unless the process is gone
            lines = text.split("\n")
            if not exited:
                lines = lines[:-1]
            for line in lines:
                m = pattern.search(line)
                if m is not None:
                    return m
            if exited:
                raise DaemonError(
                    f"{self.name} exited with {self.returncode} before a line matched "
                    f"{pattern.pattern!r}\n{self._tail()}"
                )
            if time.monotonic() >= deadline:
                raise DaemonError(
                    f"no line matching {pattern.pattern!r} from {self.name} within {timeout}s"
                    f"\n{self._tail()}"
                )
            time.sleep(poll)

    def _tail(self, n: int = 40) -> str:
        lines = self.log_text().splitlines()[-n:]
        return f"--- last {len(lines)} lines of {self.log_path} ---\n" + "\n".join(lines)

    def __repr__(self) -> str:
        where = f" netns={self.netns}" if self.netns else ""
        pid = self.proc.pid if self.proc is not None else None
        return f"<DaemonProcess {self.name} pid={pid}{where} rc={self.returncode}>"


def daemon_in(
    pair: netns.NetnsPair, ns: str, argv: Sequence[str], log_path: str | os.PathLike[str], **kw: Any
) -> DaemonProcess:
    """Start a :class:`DaemonProcess` in ``ns`` and have ``pair``'s teardown stop it."""
    d = DaemonProcess(argv, log_path, netns=ns, **kw).start()
    pair.adopt(d.popen)
    return d


__all__ = [
    "IKE_SA_FAILED",
    "IKE_SA_UP",
    "DaemonError",
    "DaemonProcess",
    "daemon_in",
    "groupvpn_argv",
    "read_debug_keys",
]
