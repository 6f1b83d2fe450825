"""The `wires` renderer's camera: a pinhole UAV camera's geometry and its sensor.

Geometry: nadir, oblique and side-on views of the ground plane z = 0 from height 1.
Sensor: what a real camera does to the light before the model sees it (exposure, white
balance, vignetting, blur, noise, JPEG), so the wires do not stand out by being cleaner
than their background.
"""

from __future__ import annotations

import cv2
import numpy as np

Rng = np.random.Generator


class Camera:
    """A pinhole camera at height 1 above the ground plane z = 0, pitched `pitch` radians
    from nadir and turned `yaw` about the vertical. Image pixel centres are at integers."""

    def __init__(self, h: int, w: int, fov: float, pitch: float, yaw: float) -> None:
        self.f = max(h, w) / (2 * np.tan(fov / 2))
        self.K = np.array([[self.f, 0, (w - 1) / 2], [0, self.f, (h - 1) / 2], [0, 0, 1]])
        down = np.diag([1.0, -1.0, -1.0])  # nadir: image x east, image y south, looking down
        c, s = np.cos(pitch), np.sin(pitch)
        tilt = np.array([[1, 0, 0], [0, c, s], [0, -s, c]])  # the image top looks further away
        cy, sy = np.cos(yaw), np.sin(yaw)
        turn = np.array([[cy, sy, 0], [-sy, cy, 0], [0, 0, 1]])
        self.R, self.centre, self.h, self.w = tilt @ down @ turn, np.array([0.0, 0.0, 1.0]), h, w

    def project(self, world: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Nx3 world points -> Nx2 image points and their depths along the optical axis."""
        cam = (world - self.centre) @ self.R.T
        depth = cam[:, 2]
        return (cam @ self.K.T)[:, :2] / np.maximum(depth, 1e-9)[:, None], depth

    def rays(self) -> np.ndarray:
        """HxWx3 world directions of the pixel rays."""
        yy, xx = np.mgrid[0:self.h, 0:self.w].astype(np.float64)
        pix = np.stack([xx, yy, np.ones_like(xx)], -1)
        return pix @ np.linalg.inv(self.K).T @ self.R

    def ground_to_image(self) -> np.ndarray:
        """3x3 homography from ground (x, y, 1) to image pixels."""
        return self.K @ self.R @ np.array([[1, 0, 0], [0, 1, 0], [0, 0, -1.0]]) @ np.array(
            [[1, 0, -self.centre[0]], [0, 1, -self.centre[1]], [0, 0, 1.0]])


def random_camera(rng: Rng, h: int, w: int) -> Camera:
    """Nadir (30 %), oblique (40 %) or side-on views (30 %: a UAV flying beside the line,
    near its height, so the wires are often seen against the sky); 50-80 degree field of view."""
    kind = rng.random()
    if kind < 0.3:
        pitch = 0.0
    elif kind < 0.7:
        pitch = rng.uniform(np.radians(10), np.radians(68))
    else:
        pitch = rng.uniform(np.radians(75), np.radians(100))
    return Camera(h, w, rng.uniform(np.radians(50), np.radians(80)), pitch, rng.uniform(0, 2 * np.pi))


def sensor(rng: Rng, img: np.ndarray, light_touch: bool) -> np.ndarray:
    """Exposure, white balance, vignetting, optics blur, noise and JPEG -> uint8 RGB.

    A user's photo already went through a camera: it gets only the mild version, so that the
    wires, not the photo, carry a different blur and noise.
    """
    if not light_touch:
        img = img * rng.uniform(0.75, 1.2) * rng.normal(1, 0.04, 3).astype(np.float32)
        h, w = img.shape[:2]
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        radius2 = ((xx - w / 2) ** 2 + (yy - h / 2) ** 2) / (h * h + w * w) * 4  # 1 at the corners
        img *= (1 - rng.uniform(0, 0.25) * radius2)[..., None]
    img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.3, 0.6 if light_touch else 0.9))
    if rng.random() < 0.2:  # motion blur of the moving UAV: a short line kernel
        kernel, angle = np.zeros((5, 5), np.float32), rng.uniform(0, np.pi)
        reach = rng.uniform(0.5, 2)
        ends = [np.round(2 + sign * reach * np.array([np.cos(angle), np.sin(angle)])).astype(int) for sign in (-1, 1)]
        cv2.line(kernel, tuple(map(int, ends[0])), tuple(map(int, ends[1])), 1.0)
        img = cv2.filter2D(img, -1, kernel / kernel.sum())
    gain = rng.uniform(0.0002, 0.002)  # shot noise grows with the signal, read noise does not
    img = img + np.sqrt(gain * np.clip(img, 0, 1) + 2e-5) * rng.standard_normal(img.shape).astype(np.float32)
    rgb = np.round(np.clip(img, 0, 1) * 255).astype(np.uint8)
    quality = int(rng.integers(55, 96))
    ok, jpeg = cv2.imencode(".jpg", rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    return np.ascontiguousarray(cv2.imdecode(jpeg, cv2.IMREAD_COLOR)[..., ::-1])
