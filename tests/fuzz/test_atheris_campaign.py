"""A bounded coverage-guided campaign (atheris, libFuzzer) over each network entry point.

The hypothesis campaigns next to this file mutate the corpus at random; atheris
instruments groupvpn's bytecode and keeps the inputs that reach new branches, so
it gets into the decoders' deeper paths that random mutation rarely hits.  Each
target of ``atheris_endpoints.py`` (the Phase 1 responder, the wire decoder in
both dialects, the member's push opener) runs a fixed number of inputs seeded
from ``tests/fuzz/corpus``, in a child process: a crash is a non-zero exit and
a ``crash-*`` file holding the input, both asserted absent.  Bounded by count,
so a slow machine takes longer but runs the same campaign.

atheris is a test dependency; without it this skips, except in CI (``CI`` set),
where it fails.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

HARNESS = Path(__file__).resolve().parent / "atheris_endpoints.py"
CORPUS = HARNESS.parent / "corpus"
#: Inputs per target: about 10 s for the responder on this project's VM.
RUNS = 20_000
TARGET_CORPORA = {
    "responder": ("phase1-main", "informational"),
    "wire": ("phase1-main", "phase1-aggressive", "informational", "pull", "push", "ack"),
    "push": ("push",),
}


def _require_atheris() -> None:
    if importlib.util.find_spec("atheris") is not None:
        return
    reason = "atheris is not installed (pip install atheris)"
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.mark.parametrize("target", sorted(TARGET_CORPORA))
def test_a_coverage_guided_campaign_finds_no_crash(target: str, tmp_path: Path) -> None:
    _require_atheris()
    found = tmp_path / "found"  # libFuzzer adds the new inputs it finds to the first corpus
    found.mkdir()
    seeds = [str(CORPUS / name) for name in TARGET_CORPORA[target]]
    assert all(Path(seed).is_dir() and any(Path(seed).iterdir()) for seed in seeds)
    result = subprocess.run(
        [sys.executable, str(HARNESS), target, str(found), *seeds,
         f"-runs={RUNS}", "-max_total_time=240", "-print_final_stats=1"],
        cwd=tmp_path, capture_output=True, text=True, timeout=280, check=False,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert not list(tmp_path.glob("crash-*")) and not list(tmp_path.glob("timeout-*"))
    done = re.search(r"Done (\d+) runs in", output)  # libFuzzer's last line
    assert done is not None, output[-4000:]
    assert int(done.group(1)) == RUNS
    # It was guided: groupvpn's code was instrumented and reported coverage from the
    # seeds on (about 75-185 edges at the start, 100-210 at the end, on this VM).
    started = re.search(r"INITED cov: (\d+)", output)
    finished = re.search(r"DONE +cov: (\d+)", output)
    assert started is not None and finished is not None, output[-2000:]
    assert int(finished.group(1)) >= int(started.group(1)) > 50
