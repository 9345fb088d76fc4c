"""Pure message <-> numpy conversions of the ROS nodes (duck-typed messages, no rclpy needed)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from robot_rl.real.conversions import image_to_msg, msg_to_image, scale_command, unscale_command

pytestmark = pytest.mark.unit


def _image() -> np.ndarray:
    # pixel (r, c) = (10r + c, 100 + c, 200 - r): every channel and position distinct
    r, c = np.mgrid[0:3, 0:4]
    return np.stack([10 * r + c, 100 + c, 200 - r], axis=-1).astype(np.uint8)


def test_image_round_trip_and_layout():
    msg = image_to_msg(_image(), SimpleNamespace())
    assert (msg.height, msg.width, msg.encoding, msg.step, msg.is_bigendian) == (3, 4, "rgb8", 12, 0)
    assert msg.data[:6] == bytes([0, 100, 200, 1, 101, 200])  # row-major, RGB interleaved
    np.testing.assert_array_equal(msg_to_image(msg), _image())


def test_bgr8_and_padded_rows_are_read():
    img = _image()
    bgr = img[..., ::-1]
    padded = np.zeros((3, 16), np.uint8)  # step 16 > 3 * width: 4 bytes of padding per row
    padded[:, :12] = bgr.reshape(3, 12)
    msg = SimpleNamespace(height=3, width=4, step=16, encoding="bgr8", data=padded.tobytes())
    np.testing.assert_array_equal(msg_to_image(msg), img)


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"encoding": "mono8"}, "encoding 'mono8' is not supported"),
        ({"data": bytes(35)}, "has 35 bytes"),
        ({"step": 10}, "with step 10"),
    ],
)
def test_bad_images_raise_one_clear_error(fields, message):
    msg = SimpleNamespace(height=3, width=4, step=12, encoding="rgb8", data=bytes(36))
    for key, value in fields.items():
        setattr(msg, key, value)
    with pytest.raises(ValueError, match=message):
        msg_to_image(msg)
    with pytest.raises(ValueError, match="expected an RGB image"):
        image_to_msg(np.zeros((3, 4)), SimpleNamespace())


def test_command_scaling_inverts():
    a = np.array([-1.0, 0.5, 1.0])
    scale, offset = np.array([2.0, 0.1, 4.0]), np.array([0.0, 1.0, -2.0])
    np.testing.assert_allclose(scale_command(a, scale, offset), [-2.0, 1.05, 2.0])
    np.testing.assert_allclose(unscale_command(scale_command(a, scale, offset), scale, offset), a)
