"""The images a rollout sends boards (hil/update_image.Images, handed to the
engine as ground.backends.BoardSet.update_image): the compiled firmware,
packed once per plan entry with that entry's manifest, byte for byte what
`hil image build` makes; and how fast the orchestrator feeds a link
(ground/rollout_run.py). In-process and quick (mpy-cross once)."""

import pytest

from ground import backends, flim
from ground.rollout_run import FRAMES_PER_PUMP, _frames_per_pump
from hil import update_image

KEY = bytes(range(32))


def _spec(version=(1, 1), **kw):
    return dict({"version": version, "label": None, "lineage": 0, "test_build": False, "defects": {}, "key": KEY}, **kw)


@pytest.fixture(scope="module")
def images():
    return update_image.Images().compile()


def test_a_boards_image_is_the_compiled_firmware_with_the_entrys_manifest(images):
    good = images(_spec())
    assert good == update_image.build((1, 1), KEY)  # the same bytes as `hil image build --version 1.1`
    m = flim.read(good, KEY)
    names = [f[0] for f in m["files"]]
    assert "node/node.mpy" in names and "runtime/slots.mpy" in names and "boot.py" not in names
    assert m["version"] == [1, 1] and not m["test_build"] and m["size"] > 50_000
    bad = images(_spec((1, 2), test_build=True, defects={"crash_on_coordinator": True}, lineage=1, label="1.2-bad"))
    mb = flim.read(bad, KEY)
    assert (mb["version"], mb["label"], mb["lineage"], mb["test_build"], mb["defects"]) == (
        [1, 2], "1.2-bad", 1, True, {"crash_on_coordinator": True})
    assert mb["digest"] != m["digest"]  # version.json differs; the modules are the same
    assert [f for f in mb["files"] if f[0] != "version.json"] == [f for f in m["files"] if f[0] != "version.json"]
    assert images(_spec()) is good  # packed once per spec
    with pytest.raises(flim.ImageError, match="tag"):
        flim.read(good, b"another fleet key")


def test_the_back_end_seam_hands_the_images_over_or_none(images):
    with_images = backends.BoardSet("emulated", {}, update_images=images)
    assert with_images.has_update_images and with_images.update_image(_spec()) == images(_spec())
    bare = backends.BoardSet("sim", None)
    assert not bare.has_update_images and bare.update_image(_spec()) is None


def test_the_pump_fills_the_ground_links_rate():
    assert _frames_per_pump({}) == FRAMES_PER_PUMP  # no rate: the default pace
    assert _frames_per_pump({"rate_bps": 9600}) == FRAMES_PER_PUMP  # a slow link: the link paces
    assert _frames_per_pump({"rate_bps": 64000}) == 30  # 8000 B/s over ~260-byte chunk frames
    assert _frames_per_pump({"rate_bps": 64000, "bits_per_byte": 10}) == 24
