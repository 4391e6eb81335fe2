"""Software updates on an emulated Pico (the MicroPython unix port behind a
pty, flashed with the .mpy image as `hil flash` writes it): an update image
(hil/update_image.py) travels as UPD_CHUNK frames over the pty through
ground link pipelines with loss and delay (hil/update_push.py), the board
stages it on its flash, checks digest and tag, unpacks it into a slot,
installs it as a trial (boot pointer, soft reset), boots it and confirms it;
a test build that crashes on becoming coordinator is reverted; power cuts
at random moments never leave the board without a runnable image, and the
update still converges. Every wait has a timeout; nothing asserts speed.
"""

import json
import os
import random

import pytest

from ground import firmware
from hil import emulated_run
from ground.update_sender import FLAG_DEFECTS, FLAG_TEST_BUILD, UpdateSender
from hil import flash as flash_mod
from hil import update_image
from hil.emulated import EmulatedBoard
from hil.update_push import Push

wire = firmware.wire
msgs = firmware.msgs

pytestmark = pytest.mark.timeout(900)

KEY = bytes(range(1, 33))
LINK = {"loss": 0.05, "delay_ms": 150, "rate_bps": 200000}
CUTS = int(os.environ.get("UPDATE_CUTS", "10"))


def _cfg(**extra):
    cfg = {"node_id": 1, "cluster": 1, "members": [1], "election_timeout_ms": 600, "seed": 7,
           "auth_key": KEY.hex(), "watchdog_ms": 0, "confirm_after_ms": 1500}
    cfg.update(extra)
    return cfg


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    d = tmp_path_factory.mktemp("image")
    return flash_mod.build(str(d / "root"))


@pytest.fixture(scope="module")
def images():
    return {
        "1.1": update_image.build((1, 1), KEY),
        "1.2-crash": update_image.build((1, 2), KEY, test_build=True, defects={"crash_on_coordinator": True}),
        "1.3-wrongkey": update_image.build((1, 3), b"not the fleet key"),
        "1.4": update_image.build((1, 4), KEY),
    }


def _start(tmp_path, built, cfg=None):
    folder = tmp_path / "node1"
    flash_mod.write_image(str(folder), version=(1, 0), label="1.0-factory", board_config=cfg or _cfg(), built=built)
    board = EmulatedBoard(str(folder), name="node1").start()
    try:
        emulated_run.boot_and_wait_hello(board, 1)
    except BaseException:
        board.stop()
        raise
    port, splitter, lines = board.open_port
    return board, Push(port, 1, LINK, LINK, seed=11, splitter=splitter, lines=lines)


def _sender(blob, upd_id, version, flags=0):
    return UpdateSender(blob, 1, upd_id, version, flags=flags, rto_s=1.0, offer_every_s=1.0)


def _pointer(board):
    try:
        with open(board.folder / "state" / "boot.ptr") as f:
            text = f.read()
    except OSError:
        return None
    return json.loads(text[: text.rfind("\n")])


def _hello_version(push, after):
    for t, f in push.frames:
        if t >= after and f.type == msgs.HELLO and f.src == 1:
            return (f.msg.fw_major, f.msg.fw_minor)
    return None


def test_an_image_crosses_a_lossy_link_installs_as_a_trial_and_confirms(tmp_path, built, images):
    board, push = _start(tmp_path, built)
    try:
        s = _sender(images["1.1"], 7, (1, 1))
        push.start(s)
        push.run_until(lambda s: s.state == "verified" or s.error, 300, "verified image")
        assert s.error is None, s.error
        assert s.sends >= s.chunks  # every chunk at least once; losses were resent
        assert board.folder.joinpath("slots", "a", "ok").exists()
        t = push.now()
        s.install()
        push.run_until(lambda s: s.state == "confirmed" or s.error, 120, "confirmed trial")
        assert s.node_version == (1, 1)
        assert _hello_version(push, t) == (1, 1)  # the board rebooted into the new image
        states = [a["state"] for a in push.acks if a["upd_id"] == 7]
        assert 5 in states  # it reported TRIAL before CONFIRMED
        p = _pointer(board)
        assert (p["slot"], p["state"], p["prev"]) == ("a", "confirmed", "")
        # Rollback to the previous confirmed image (the factory one).
        t = push.now()
        s.rollback()
        push.run_until(lambda s: _hello_version(push, t) is not None, 60, "HELLO after rollback")
        assert _hello_version(push, t) == (1, 0)
        assert _pointer(board)["slot"] == ""
    finally:
        board.stop()


def test_a_test_build_that_crashes_as_coordinator_is_reverted(tmp_path, built, images):
    board, push = _start(tmp_path, built)
    try:
        s = _sender(images["1.2-crash"], 8, (1, 2), flags=FLAG_TEST_BUILD | FLAG_DEFECTS)
        push.start(s)
        push.run_until(lambda s: s.state == "verified" or s.error, 300, "verified image")
        s.install()
        push.run_until(lambda s: s.state == "reverted" or s.error, 120, "reverted trial")
        assert s.node_version == (1, 0)
        p = _pointer(board)
        assert (p["slot"], p["state"], p["bad"]) == ("", "reverted", "a")
        crashes = b"".join(p.read_bytes() for p in board.folder.glob("crash*.txt"))  # crash.old.txt once reported
        assert b"crash on becoming coordinator" in crashes
    finally:
        board.stop()


def test_an_image_under_another_key_is_refused_and_nothing_installed(tmp_path, built, images):
    board, push = _start(tmp_path, built)
    try:
        s = _sender(images["1.3-wrongkey"], 9, (1, 3))
        push.start(s)
        push.run_until(lambda s: s.error, 300, "refusal")
        assert s.reason == "tag" and "node 1 refused update 9 (1.3): tag" == s.error
        assert not board.folder.joinpath("slots", "a", "ok").exists() and _pointer(board) is None
        s.install()  # refused too: nothing verified
        bad = UpdateSender(images["1.1"][:-300], 1, 10, (1, 1), rto_s=1.0)  # truncated
        push.start(bad)
        push.run_until(lambda s: s.error, 300, "refusal")
        assert bad.reason == "truncated"
        assert _pointer(board) is None
    finally:
        board.stop()


def _runnable(board, slot):
    return slot == "" or board.folder.joinpath("slots", slot, "ok").exists()


def test_power_cuts_during_transfer_install_and_trial_never_leave_it_unbootable(tmp_path, built, images):
    rng = random.Random(int(os.environ.get("UPDATE_SEED", "5")))
    board, push = _start(tmp_path, built)
    upd = [20]
    want = [(1, 1)]
    outcomes = []

    def new_sender():  # what a rollout does after a revert or a refusal: offer again
        upd[0] += 1
        s = _sender(images["%d.%d" % want[0]], upd[0], want[0])
        push.start(s)
        return s

    try:
        s = new_sender()
        for cut in range(CUTS):
            if s.state == "reverted" or s.error:
                s = new_sender()
            elif s.state == "confirmed":  # the next version: more installs and trials to cut into
                want[0] = (1, 4) if s.version == (1, 1) else (1, 1)
                s = new_sender()
            if cut >= CUTS // 2:  # the second half: cuts during install, trial boot and confirmation
                push.run_until(lambda s: s.state not in (None, "idle", "receiving", "verifying") or s.error, 300,
                               "verified image")
            if s.state in (None, "idle", "receiving"):
                target = rng.randrange(max(1, s.chunks))
                push.run_until(lambda s: s.have >= target or s.done, 120, "progress")
                phase = "transfer"
            else:
                if s.state == "verified":
                    s.install()
                phase = s.state
                for _ in range(rng.randrange(1, 400)):  # a random moment in install, reboot, trial, confirmation
                    push.step(0.01)
            board.power_cut()
            p = _pointer(board)
            if p is not None:  # the pointer names a runnable image; a trial's way back is runnable
                assert _runnable(board, p["slot"]) or p["state"] in ("trial", "trial_booted"), (cut, p)
                if p["state"] in ("trial", "trial_booted"):
                    assert _runnable(board, p["prev"] or ""), (cut, p)
            board.power_on()
            t = push.now()
            push.run_until(lambda s: _hello_version(push, t) is not None, 60, "HELLO after power cut %d" % cut)
            outcomes.append((phase, _hello_version(push, t)))
            print("cut %d (%s): %s, %s" % (cut, phase, s.progress(), _pointer(board)), flush=True)
            s.status()
        # Then let it finish: it converges to the wanted version, confirmed.
        for attempt in range(3):
            if s.state == "reverted" or s.error:
                s = new_sender()
            push.run_until(lambda s: s.state not in (None, "idle", "receiving", "verifying") or s.error, 300,
                           "verified image")
            if s.state == "verified":
                s.install()
            push.run_until(lambda s: s.state in ("confirmed", "reverted") or s.error, 180, "confirmed")
            if s.state == "confirmed":
                break
        assert s.state == "confirmed" and s.node_version == want[0], (s.progress(), outcomes)
        assert _pointer(board)["state"] == "confirmed"
    finally:
        board.stop()
    print("power cuts:", outcomes)
