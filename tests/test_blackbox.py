"""synack.blackbox on CPython: bounded ring, rate-limited flash writes, reload after a
reboot, a damaged file ignored (the .tmp a power cut left used instead), secrets
scrubbed, and the supervisor's optional event sink."""

from __future__ import annotations

import pytest

from synack import blackbox
from synack import supervisor as sv


@pytest.fixture(autouse=True)
def _no_secrets():
    yield
    blackbox._secrets.clear()


def test_ring_is_bounded_and_writes_are_rate_limited(tmp_path):
    bb = blackbox.Blackbox(str(tmp_path / "bb"), size=5, min_interval_ms=60000)
    assert bb.writes == 1                        # the boot event is urgent
    for i in range(20):
        bb.add("connect_err", "attempt %d" % i)
    assert len(bb.entries) == 5 and bb.entries[-1][5] == "attempt 19"
    assert bb.writes == 1 and bb.dirty           # batched: nothing written yet
    bb.add("link_down", "link lost")             # urgent: written at once
    assert bb.writes == 2 and not bb.dirty
    bb.add("x", "y" * 500)
    assert len(bb.entries[-1][5]) == blackbox._DETAIL
    assert bb.flush(True) and bb.writes == 3
    assert not bb.flush(True)                    # nothing new: no write


def test_survives_a_reboot_and_keeps_counting(tmp_path):
    d = str(tmp_path / "bb")
    bb = blackbox.Blackbox(d)
    bb.add("link_up")
    bb.add("connect_err", OSError(113, "EHOSTUNREACH"))
    bb.flush(True)
    again = blackbox.Blackbox(d)
    kinds = [e["kind"] for e in again.events()]
    assert kinds == ["boot", "link_up", "connect_err", "boot"]
    assert [e["seq"] for e in again.events()] == [1, 2, 3, 4]
    assert again.boots == 2 and again.events()[-1]["boot"] == 2
    assert "OSError" in again.events()[2]["detail"]


def test_damaged_file_is_ignored_and_the_tmp_is_used(tmp_path):
    d = tmp_path / "bb"
    bb = blackbox.Blackbox(str(d))
    bb.add("link_up")
    bb.flush(True)
    good = (d / "ring").read_bytes()
    (d / "ring.tmp").write_bytes(good)           # a cut between remove and rename (FAT)
    (d / "ring").write_bytes(good[:-3] + b"xyz")  # data that never reached the medium
    again = blackbox.Blackbox(str(d), boot=False)
    assert again.corrupt == 1
    assert [e["kind"] for e in again.events()] == ["boot", "link_up"]
    (d / "ring.tmp").write_bytes(b"garbage\n")
    fresh = blackbox.Blackbox(str(d), boot=False)
    assert fresh.corrupt == 2 and fresh.entries == []


def test_secrets_are_scrubbed_from_details(tmp_path):
    blackbox.hide("hunter2", "", None)
    bb = blackbox.Blackbox(None)
    bb.add("connect_err", "auth with hunter2 failed")
    assert "hunter2" not in str(bb.entries) and "***" in bb.entries[-1][5]


class _Link:
    def __init__(self):
        self.fail = 1
        self.up_now = False

    def up(self):
        if self.fail:
            self.fail -= 1
            raise OSError(113, "no route")
        self.up_now = True

    def down(self):
        self.up_now = False

    def is_up(self):
        return self.up_now


def test_supervisor_feeds_the_black_box():
    bb = blackbox.Blackbox(None, boot=False)
    link = _Link()
    sup = sv.Supervisor(link, events=bb.supervisor_event, base_ms=10, cap_ms=10, seed=1)
    sup.start()
    now = 0
    for _ in range(6):
        now += 20
        sup.step(now)
    link.up_now = False
    for _ in range(3):
        now += 20
        sup.step(now)
    kinds = [(e["kind"], e["detail"]) for e in bb.events()]
    assert kinds[0][0] == "connect_err" and "OSError" in kinds[0][1]
    assert ("link_up", "") in kinds
    assert ("link_down", "link lost") in kinds


def test_a_failing_sink_does_not_stop_the_supervisor():
    def boom(event, cause):
        raise RuntimeError("recorder broke")

    link = _Link()
    link.fail = 0
    sup = sv.Supervisor(link, events=boom, seed=1)
    sup.start()
    sup.step(0)
    sup.step(1)
    assert sup.state_name == "ONLINE"
