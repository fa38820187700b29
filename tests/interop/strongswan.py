"""strongSwan 5.9 (charon + swanctl) as an IKEv1 PSK peer inside a network namespace.

Each instance gets its own directory with ``strongswan.conf``, ``swanctl.conf``,
``charon.log`` (``ike`` log level 4, which hex-dumps SKEYID*, Ka, ...) and
``charon.out``, and its own vici socket, so several instances run side by side.
charon runs inside the namespace in a private mount namespace with a tmpfs on
``/run``, because its pid file is hard-wired to ``/var/run/charon.pid``.

Two connections are defined on every instance, so either side can initiate:

``mm``
    Main Mode, PSK, identities are the IP addresses (``local_id``/``remote_id``).
``am``
    Aggressive Mode, PSK, identities are FQDNs (``local_fqdn``/``remote_fqdn``).

Use port 500 (the default) for interop with a plain ISAKMP peer: on any other
port strongSwan prepends the 4-byte non-ESP marker to every IKE packet and
drops incoming packets without it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import pytest

from tests.interop.daemon import DaemonError, DaemonProcess
from tests.interop.netns import NetnsPair

CHARON = "/usr/lib/ipsec/charon"
SWANCTL = "/usr/sbin/swanctl"
DEFAULT_PSK = "gvt-interop-psk-0123456789"
PLUGINS = (
    "random nonce openssl hmac sha1 sha2 md5 aes gmp kdf pem pkcs1 x509 pubkey "
    "kernel-netlink socket-default vici"
)


def strongswan_unavailable_reason() -> str | None:
    for path in (CHARON, SWANCTL):
        if not os.access(path, os.X_OK):
            return f"{path} not installed (run scripts/setup as root)"
    if shutil.which("unshare") is None:
        return "unshare (util-linux) not found"
    return None


def require_strongswan() -> None:
    """Skip when strongSwan is missing; in CI (``CI`` set) fail instead, it must be there."""
    reason = strongswan_unavailable_reason()
    if reason is None:
        return
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


class IkeSa(NamedTuple):
    """One row of ``swanctl --list-sas``."""

    conn: str
    state: str
    icookie: str
    rcookie: str


@dataclass(frozen=True)
class IkeKeys:
    """Key material charon logged for one IKE SA (hex strings, lower case)."""

    conn: str  # "mm"/"am" ("" if charon never named it)
    uid: int  # charon's unique IKE SA id: "<mm|1>" in the log
    icookie: str
    rcookie: str
    ka: str
    skeyid: str = ""
    skeyid_d: str = ""
    skeyid_a: str = ""
    skeyid_e: str = ""
    g_xy: str = ""
    iv0: str = ""

    @property
    def uat(self) -> tuple[str, str]:
        """``(icookie, ka)`` for tshark's ikev1_decryption_table."""
        return (self.icookie, self.ka)


_LIST_SA = re.compile(
    r"^(?P<conn>\S+): #\d+, (?P<state>[A-Z_]+), IKEv1, "
    r"(?P<icookie>[0-9a-f]{16})_i\*? (?P<rcookie>[0-9a-f]{16})_r\*?",
    re.MULTILINE,
)
# "<mm|1>" or "<1>" in a log line
_SA_NAME = re.compile(r"\] <(?:(?P<conn>[^|>]+)\|)?(?P<uid>\d+)>")
# "[IKE] <mm|1> SKEYID_e => 20 bytes @ 0x7f..."
_HEX_HDR = re.compile(r"\[IKE\] <([^>]+)> (.+?) => (\d+) bytes @ 0x[0-9a-f]+$")
# "[IKE] <mm|1>    0: 01 02 ...  ................"
_HEX_ROW = re.compile(r"\[IKE\] <([^>]+)>\s+\d+: ((?:[0-9A-F]{2} )+)")
_KEY_LABELS = {
    "shared Diffie Hellman secret": "g_xy",
    "SKEYID": "skeyid",
    "SKEYID_d": "skeyid_d",
    "SKEYID_a": "skeyid_a",
    "SKEYID_e": "skeyid_e",
    "encryption key Ka": "ka",
    "initial IV": "iv0",
    # first 16 bytes: CKY-I | CKY-R
    "natd_chunk": "natd",
}


def parse_charon_keys(log: str) -> list[IkeKeys]:
    """Key material per IKE SA from a charon ``ike = 4`` log, in log order.

    charon names an SA ``<conn|N>`` in its log, or just ``<N>`` while a
    responder does not know the connection yet, so SAs are grouped by the
    unique id ``N``.  The cookies come from the first ``natd_chunk`` dump of
    the SA (strongSwan always sends NAT-D payloads); only SAs with both
    cookies and Ka are returned.
    """
    found: dict[str, dict[str, str]] = {}
    conns: dict[str, str] = {}
    cur: tuple[str, str, int, bytearray] | None = None

    def flush() -> None:
        if cur is None:
            return
        uid, label, n, buf = cur
        if label in _KEY_LABELS:
            found.setdefault(uid, {}).setdefault(_KEY_LABELS[label], bytes(buf[:n]).hex())

    for line in log.splitlines():
        sa = _SA_NAME.search(line)
        if sa is not None and sa["conn"]:
            conns.setdefault(sa["uid"], sa["conn"])
        m = _HEX_HDR.search(line)
        if m is not None:
            flush()
            cur = (m.group(1).rsplit("|", 1)[-1], m.group(2), int(m.group(3)), bytearray())
            continue
        m = _HEX_ROW.search(line)
        if m is not None and cur is not None and m.group(1).rsplit("|", 1)[-1] == cur[0]:
            cur[3].extend(bytes.fromhex(m.group(2).replace(" ", "")))
            continue
        if cur is not None and "[IKE]" in line:
            flush()
            cur = None
    flush()

    out: list[IkeKeys] = []
    for uid, d in found.items():
        natd = d.get("natd", "")
        if len(natd) < 32 or "ka" not in d:
            continue
        out.append(
            IkeKeys(
                conn=conns.get(uid, ""),
                uid=int(uid),
                icookie=natd[:16],
                rcookie=natd[16:32],
                ka=d["ka"],
                skeyid=d.get("skeyid", ""),
                skeyid_d=d.get("skeyid_d", ""),
                skeyid_a=d.get("skeyid_a", ""),
                skeyid_e=d.get("skeyid_e", ""),
                g_xy=d.get("g_xy", ""),
                iv0=d.get("iv0", ""),
            )
        )
    return out


class StrongSwan:
    """One charon instance in namespace ``netns``, configured through swanctl.

    ``proposals`` is a swanctl IKE proposal string such as
    ``"aes128-sha1-modp2048"`` (comma-separate several).  ``port`` is charon's
    IKE port (``remote_port`` defaults to it).  Retransmits are short by
    default (``retransmit_tries`` × ``retransmit_timeout``) so that failure
    tests finish quickly.
    """

    def __init__(
        self,
        workdir: str | os.PathLike[str],
        *,
        netns: str,
        local: str,
        remote: str,
        proposals: str = "aes128-sha1-modp2048",
        psk: str = DEFAULT_PSK,
        port: int = 500,
        remote_port: int | None = None,
        local_id: str | None = None,
        remote_id: str | None = None,
        local_fqdn: str = "a.gvt.test",
        remote_fqdn: str = "b.gvt.test",
        ike_loglevel: int = 4,
        retransmit_tries: int = 2,
        retransmit_timeout: float = 1.0,
        conn_options: Mapping[str, str] | None = None,
        pair: NetnsPair | None = None,
        name: str = "charon",
    ) -> None:
        self.workdir = Path(workdir)
        self.netns = netns
        self.local = local
        self.remote = remote
        self.proposals = proposals
        self.psk = psk
        self.port = port
        self.remote_port = port if remote_port is None else remote_port
        self.local_id = local if local_id is None else local_id
        self.remote_id = remote if remote_id is None else remote_id
        self.local_fqdn = local_fqdn
        self.remote_fqdn = remote_fqdn
        self.ike_loglevel = ike_loglevel
        self.retransmit_tries = retransmit_tries
        self.retransmit_timeout = retransmit_timeout
        self.conn_options = dict(conn_options or {})
        self.pair = pair
        self.name = name
        self.log_path = self.workdir / "charon.log"
        self.conf_path = self.workdir / "strongswan.conf"
        self.swanctl_path = self.workdir / "swanctl.conf"
        self._vici_tmpdir: str | None = None
        self.vici_path = self.workdir / "charon.vici"
        self.daemon: DaemonProcess | None = None
        self.last_output = ""

    @classmethod
    def in_pair(
        cls, pair: NetnsPair, side: str, workdir: str | os.PathLike[str], **kwargs: object
    ) -> StrongSwan:
        """An instance on ``side`` (``"a"`` or ``"b"``) of ``pair``, talking to the other side.

        The FQDNs default to ``<side>.gvt.test`` / ``<other>.gvt.test``, so two
        instances made this way agree on Aggressive Mode identities.
        """
        if side not in ("a", "b"):
            raise ValueError("side must be 'a' or 'b'")
        ns = pair.a if side == "a" else pair.b
        other = "b" if side == "a" else "a"
        kwargs.setdefault("local_fqdn", f"{side}.gvt.test")
        kwargs.setdefault("remote_fqdn", f"{other}.gvt.test")
        kwargs.setdefault("name", f"charon-{side}")
        return cls(
            workdir,
            netns=ns,
            local=pair.addr(ns),
            remote=pair.peer_addr(ns),
            pair=pair,
            **kwargs,  # type: ignore[arg-type]
        )

    # -- configuration -------------------------------------------------------------

    @property
    def vici_uri(self) -> str:
        return f"unix://{self.vici_path}"

    def strongswan_conf(self) -> str:
        return f"""\
# generated by tests/interop/strongswan.py ({self.name}, netns {self.netns})
charon {{
  port = {self.port}
  port_nat_t = {self.port + 4000 if self.port != 500 else 4500}
  load_modular = no
  load = {PLUGINS}
  install_routes = no
  install_virtual_ip = no
  i_dont_care_about_security_and_use_aggressive_mode_psk = yes
  retransmit_tries = {self.retransmit_tries}
  retransmit_timeout = {self.retransmit_timeout}
  retransmit_base = 1.4
  plugins {{
    vici {{
      socket = {self.vici_uri}
    }}
  }}
  syslog {{
    daemon {{
      default = -1
    }}
  }}
  filelog {{
    gvt {{
      path = {self.log_path}
      append = no
      flush_line = yes
      time_format = %H:%M:%S
      ike_name = yes
      default = 1
      ike = {self.ike_loglevel}
      cfg = 2
      net = 2
      knl = 1
      enc = 1
    }}
  }}
}}
"""

    def _conn(self, name: str, aggressive: bool, local_id: str, remote_id: str) -> str:
        extra = "".join(f"    {k} = {v}\n" for k, v in self.conn_options.items())
        return f"""\
  {name} {{
    version = 1
    aggressive = {"yes" if aggressive else "no"}
    local_addrs = {self.local}
    remote_addrs = {self.remote}
    local_port = {self.port}
    remote_port = {self.remote_port}
    proposals = {self.proposals}
    encap = no
    rekey_time = 0
    dpd_delay = 0
{extra}    local {{
      auth = psk
      id = {local_id}
    }}
    remote {{
      auth = psk
      id = {remote_id}
    }}
  }}
"""

    def swanctl_conf(self) -> str:
        psk = self.psk.replace("\\", "\\\\").replace('"', '\\"')
        return (
            "# generated by tests/interop/strongswan.py\nconnections {\n"
            + self._conn("mm", False, self.local_id, self.remote_id)
            + self._conn("am", True, self.local_fqdn, self.remote_fqdn)
            + f"""}}
secrets {{
  ike-ip {{
    id-l = {self.local_id}
    id-r = {self.remote_id}
    secret = "{psk}"
  }}
  ike-fqdn {{
    id-l = {self.local_fqdn}
    id-r = {self.remote_fqdn}
    secret = "{psk}"
  }}
}}
"""
        )

    # -- lifecycle -----------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> StrongSwan:
        """Write the config, start charon in the namespace and load the connections."""
        if self.daemon is not None:
            raise RuntimeError(f"{self.name} already started")
        require_strongswan()
        self.workdir.mkdir(parents=True, exist_ok=True)
        if len(str(self.vici_path)) > 100:  # sun_path is 108 bytes
            self._vici_tmpdir = tempfile.mkdtemp(prefix="gvt-vici-")
            self.vici_path = Path(self._vici_tmpdir) / "charon.vici"
        self.vici_path.unlink(missing_ok=True)
        self.log_path.unlink(missing_ok=True)
        self.conf_path.write_text(self.strongswan_conf())
        self.swanctl_path.write_text(self.swanctl_conf())
        self.swanctl_path.chmod(0o600)
        env = dict(os.environ, STRONGSWAN_CONF=str(self.conf_path))
        # unshare (without --fork) and sh's final exec keep the PID: it is charon's.
        argv = [
            "unshare", "--mount", "--propagation", "private",
            "sh", "-c", 'mount -t tmpfs gvt-run /run && exec "$0"', CHARON,
        ]  # fmt: skip
        self.daemon = DaemonProcess(
            argv, self.workdir / "charon.out", netns=self.netns, env=env, name=self.name
        ).start()
        if self.pair is not None:
            self.pair.adopt(self.daemon.popen)
            self.pair.on_teardown(self.stop)  # also removes a private vici directory
        deadline = time.monotonic() + timeout
        while not self.vici_path.is_socket():
            if not self.daemon.is_alive():
                raise DaemonError(
                    f"{self.name} exited with {self.daemon.returncode}:\n"
                    f"{self.daemon.log_text()}{self.log_text()}"
                )
            if time.monotonic() > deadline:
                raise DaemonError(f"{self.name}: vici socket did not appear in {timeout}s")
            time.sleep(0.02)
        self.swanctl("--load-all", "--noprompt", "--file", str(self.swanctl_path))
        return self

    def __enter__(self) -> StrongSwan:
        return self if self.daemon is not None else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def is_alive(self) -> bool:
        return self.daemon is not None and self.daemon.is_alive()

    @property
    def pid(self) -> int:
        if self.daemon is None:
            raise RuntimeError(f"{self.name} not started")
        return self.daemon.pid

    def stop(self) -> int | None:
        """Stop charon (SIGTERM, then SIGKILL, by PID); returns its exit status."""
        rc = self.daemon.stop() if self.daemon is not None else None
        if self._vici_tmpdir is not None:
            shutil.rmtree(self._vici_tmpdir, ignore_errors=True)
            self._vici_tmpdir = None
        else:
            self.vici_path.unlink(missing_ok=True)
        return rc

    # -- control -------------------------------------------------------------------

    def swanctl(self, *args: str, check: bool = True, timeout: float = 30.0) -> str:
        """Run ``swanctl ARGS --uri <this instance>`` (from the host, over vici)."""
        res = subprocess.run(
            [SWANCTL, *args, "--uri", self.vici_uri],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        out = res.stdout + res.stderr
        if check and res.returncode != 0:
            raise RuntimeError(f"swanctl {' '.join(args)} failed ({res.returncode}):\n{out}")
        return out

    def initiate(self, conn: str = "mm", timeout: float = 5.0) -> bool:
        """Initiate the IKE SA of ``conn`` (Phase 1 only); True when it came up.

        swanctl's output is kept in ``last_output``.
        """
        secs = max(1, round(timeout))
        res = subprocess.run(
            [SWANCTL, "--initiate", "--ike", conn, "--timeout", str(secs),
             "--loglevel", "1", "--uri", self.vici_uri],
            capture_output=True, text=True, timeout=secs + 10, check=False,
        )  # fmt: skip
        # swanctl itself warns about plugins it cannot load; drop that noise
        self.last_output = "".join(
            line
            for line in (res.stdout + res.stderr).splitlines(keepends=True)
            if not (line.startswith("plugin '") and "failed to load" in line)
        )
        return res.returncode == 0 and "initiate completed successfully" in self.last_output

    def list_sas(self) -> list[IkeSa]:
        out = self.swanctl("--list-sas")
        return [
            IkeSa(m["conn"], m["state"], m["icookie"], m["rcookie"]) for m in _LIST_SA.finditer(out)
        ]

    def wait_established(self, timeout: float = 5.0, conn: str | None = None) -> IkeSa | None:
        """The first ESTABLISHED IKE SA (of ``conn`` if given), or None after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while True:
            for sa in self.list_sas():
                if sa.state == "ESTABLISHED" and (conn is None or sa.conn == conn):
                    return sa
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.05)

    # -- logs ----------------------------------------------------------------------

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, n: int = 60) -> str:
        lines = self.log_text().splitlines()[-n:]
        return f"--- last {len(lines)} lines of {self.log_path} ---\n" + "\n".join(lines)

    def keys(self) -> list[IkeKeys]:
        """Key material per IKE SA from charon's log (needs ``ike_loglevel >= 4``)."""
        return parse_charon_keys(self.log_text())

    def uat_keys(self) -> list[tuple[str, str]]:
        """``[(icookie_hex, ka_hex), ...]`` for :func:`tests.interop.tshark.decode`."""
        return [k.uat for k in self.keys()]

    def __repr__(self) -> str:
        return f"<StrongSwan {self.name} netns={self.netns} {self.local}:{self.port}>"
