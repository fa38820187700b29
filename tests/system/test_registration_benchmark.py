"""The registration benchmark still runs: a small fleet registers with no failure.

This checks what the benchmark reports, not how fast: rates belong in
docs/benchmarks.md, not in a test on a shared machine.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.registration import count_members, server_config

ROOT = Path(__file__).resolve().parents[2]


def test_generated_server_config_lists_every_member_as_a_gateway() -> None:
    config = server_config(3, 14)
    assert "dh-group group14" in config
    for index, address in enumerate(("127.64.0.1", "127.64.0.2", "127.64.0.3")):
        assert f"ike gateway m{index} address {address}" in config
        assert f"group g1 ike-gateway m{index}" in config


def test_count_members_reads_the_registered_members_view() -> None:
    view: dict[str, list[dict[str, list[object]]]] = {
        "groups": [{"members": [{}, {}]}, {"members": [{}]}]
    }
    assert count_members(view) == 3


@pytest.mark.timeout(180)
def test_small_fleet_registers_without_failure() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.registration", "--members", "12",
         "--groups", "2", "--window", "4", "--port", "28848"],
        cwd=ROOT, capture_output=True, text=True, timeout=170,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith("| 2 | 12 |")]
    assert len(rows) == 1, result.stdout
    cells = [cell.strip() for cell in rows[0].strip("|").split("|")]
    failures, registered_at_server = cells[4], cells[5]
    assert failures == "0" and registered_at_server == "12"
