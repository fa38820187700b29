"""The multicast routing requests the member data plane and the lab core hand the kernel.

Layouts from include/uapi/linux/mroute.h (struct vifctl: u16 vifi, u8 flags, u8
threshold, u32 rate_limit, int ifindex, in_addr rmt_addr = 16 octets; struct mfcctl:
in_addr origin, in_addr mcastgrp, u16 parent, u8 ttls[32], 2 octets of alignment,
u32 pkt_cnt, u32 byte_cnt, u32 wrong_if, int expire = 60 octets), in this machine's
byte order.
"""

from __future__ import annotations

import sys

import pytest

from groupvpn.dataplane.mroute import MAXVIFS, mfcctl, vifctl
from groupvpn.lab.mrouter import flood_entry, parse_upcall


def _u16(value: int) -> bytes:
    return value.to_bytes(2, sys.byteorder)


def _u32(value: int) -> bytes:
    return value.to_bytes(4, sys.byteorder)


def test_a_vif_by_interface_index():
    assert vifctl(3, 7) == _u16(3) + bytes([0x8, 1]) + _u32(0) + _u32(7) + bytes(4)
    assert len(vifctl(0, 1, 255)) == 16 and vifctl(0, 1, 255)[3] == 255


def test_a_forwarding_entry_and_its_alignment():
    ttls = bytes([255, 1, 1]) + bytes([255] * (MAXVIFS - 3))
    entry = mfcctl(bytes(4), bytes([239, 5, 5, 5]), 1, ttls)
    assert len(entry) == 60
    assert entry[:10] == bytes(4) + bytes([239, 5, 5, 5]) + _u16(1)
    assert entry[10:42] == ttls and entry[42:] == bytes(18)  # padding, then four counters


def test_a_forwarding_entry_takes_exactly_one_threshold_per_vif():
    with pytest.raises(ValueError, match="31 TTL thresholds, the kernel takes 32"):
        mfcctl(bytes(4), bytes(4), 0, bytes(31))


def test_the_lab_core_floods_a_group_to_every_other_vif():
    entry = flood_entry(bytes([10, 1, 1, 1]), bytes([239, 5, 5, 5]), 0, [1, 2])
    assert entry[10:42] == bytes([0, 1, 1]) + bytes(MAXVIFS - 3)


def test_an_upcall_is_told_from_igmp():
    upcall = bytes(8) + bytes([1, 0]) + bytes([2, 0]) + bytes([10, 1, 1, 1, 239, 5, 5, 5])
    assert parse_upcall(upcall) == (1, 2, bytes([10, 1, 1, 1]), bytes([239, 5, 5, 5]))
    igmp = bytes(9) + bytes([2]) + bytes(10)  # a real IP header: protocol 2
    assert parse_upcall(igmp) is None and parse_upcall(b"short") is None
