"""Removing a member's IKE gateway from the running key server's group locks it out.

On the spec's example network with real daemons on loopback (docs/rekey-wire.md §2a):
a reload that drops gw-member2 from g1 deletes the group's KEK in a push only member1
gets; member1 registers again for the new KEK and TEKs, and a push under the new
KEK then deletes the old TEKs.  member2 is sent nothing and keeps only keys that no
longer protect anything.  Short timers keep the wait small: 1 retransmission 2 s
apart and an activation-time-delay of 10 s put the TEK deletion 22 s after the
reload.
"""

from __future__ import annotations

from pathlib import Path

from tests.system.spec_network import (
    eventually,
    groupvpn,
    kek_view,
    member_keys,
    registered_members,
    running_spec_network,
    server_spis,
)

GROUP = "set security group-vpn server group g1"
SHORT_TIMERS = [
    f"{GROUP} activation-time-delay 10",
    f"{GROUP} server-member-communication number-of-retransmission 1",
    f"{GROUP} server-member-communication retransmission-period 2",
]


def _kek_spi(control: Path, role: str) -> str | None:
    rows = kek_view(control, role)["security-associations"]
    return rows[0]["spi"] if rows else None


def _held(control: Path) -> set[str]:
    return {key["spi"] for key in member_keys(control)}


def test_a_removed_gateways_member_is_locked_out_and_the_other_rekeys_by_registering(
    tmp_path: Path,
):
    with running_spec_network(tmp_path, server_lines=SHORT_TIMERS) as (sockets, daemons):
        server, member1, member2 = (sockets[n] for n in ("server", "member1", "member2"))
        old_kek = _kek_spi(server, "server")
        old_teks = set(server_spis(server).values())
        assert _kek_spi(member1, "member") == _kek_spi(member2, "member") == old_kek
        held1, held2 = (_held(member) for member in (member1, member2))
        assert held1 and held1 <= old_teks  # those of the policies its scope admits
        conf = tmp_path / "server.conf"
        conf.write_text(conf.read_text().replace(f"{GROUP} ike-gateway gw-member2\n", ""))
        offset = daemons["member1"].log_offset()

        result = groupvpn("reload", "--control", str(server), check=True)
        assert result.stdout.splitlines()[-2:] == [
            "  group g1 (group-id 1): changed: ike-gateway gw-member2 removed",
            "    rekey sent: group g1 (group-id 1), SEQ 1, member-removal, to 1 member; "
            "KEK deleted: members register again for the new keys",
        ]
        assert list(registered_members(server)) == ["127.0.0.11"]
        new_kek = _kek_spi(server, "server")
        new_teks = set(server_spis(server).values())
        assert new_kek != old_kek and not new_teks & old_teks

        # member1 registers again: the new KEK, and new TEKs next to its old ones.
        daemons["member1"].wait_for_line(
            r"registering again: vpn=gvpn1 reason=the key server deleted the KEK",
            timeout=10, since=offset,
        )  # fmt: skip
        # (After a random wait of up to 10 s: REREGISTRATION_SPREAD.)
        assert eventually(lambda: _kek_spi(member1, "member") == new_kek, timeout=25)
        fresh = _held(member1) - held1
        assert len(fresh) == len(held1) and fresh <= new_teks
        assert held1 <= _held(member1)  # still decrypting: nothing was lost meanwhile
        # 22 s after the reload a push under the new KEK deletes the old TEKs.
        assert eventually(lambda: _held(member1) == fresh, timeout=40), member_keys(member1)
        line = r"rekey sent: group=g1 group-id=1 seq=2 reasons=member-removal members=1"
        daemons["server"].wait_for_line(line, timeout=5)

        # member2 was sent nothing: the old KEK and old TEKs, which nobody uses now.
        assert _kek_spi(member2, "member") == old_kek
        assert _held(member2) == held2
        for daemon in daemons.values():
            assert "Traceback" not in daemon.log_text()
