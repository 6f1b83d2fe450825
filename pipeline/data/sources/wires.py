"""The `wires` renderer: conductors hanging in 3-D, seen by a UAV camera, with exact masks.

A pinhole camera (nadir or oblique, camera height 1) looks at a textured ground plane
(pipeline.data.sources.terrain) or at a user's photo. Each corridor holds parallel
conductors hanging as catenaries (cosh) between towers outside the view; they are
projected point by point, so perspective makes near wires wider and bundles converge.
Coverage is analytic (the overlap of each pixel with the projected wire, from its
distance to the curve), so the mask rule is exact: LINE where the visible coverage is
>= 0.5, IGNORE where it is between 0 and 0.5, BACKGROUND elsewhere. Shading, glints,
shadows, occluding foliage, blur, noise and JPEG change the image, never the mask.
"""

from __future__ import annotations

import cv2
import numpy as np

from pipeline.data.sources.base import BACKGROUND, IGNORE_INDEX, LINE
from pipeline.data.sources.terrain import fractal, ground, occluder

Rng = np.random.Generator
SUN_DISC = 0.0093  # radians: the sun's angular diameter blurs a wire's shadow (penumbra)


def stroke_coverage(h: int, w: int, points: np.ndarray, widths: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Coverage in [0, 1] of an open polyline (pixel centres at integer x, y) whose width
    in pixels varies linearly along each segment, and the signed position across it in
    [-1, 1] (for shading). A pixel's coverage is the overlap of its 1-pixel footprint,
    measured across the curve, with the wire: exact for a straight wire along a pixel axis.
    """
    cover, across = np.zeros((h, w), np.float32), np.zeros((h, w), np.float32)
    for a, b, wa, wb in zip(points[:-1], points[1:], widths[:-1], widths[1:], strict=True):
        reach = max(wa, wb) / 2 + 1
        x0, y0 = np.floor(np.minimum(a, b) - reach).astype(int)
        x1, y1 = np.ceil(np.maximum(a, b) + reach).astype(int)
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w - 1), min(y1, h - 1)
        if x0 > x1 or y0 > y1:
            continue
        yy, xx = np.mgrid[y0:y1 + 1, x0:x1 + 1].astype(np.float64)
        d = b - a
        t = np.clip(((xx - a[0]) * d[0] + (yy - a[1]) * d[1]) / max(d @ d, 1e-12), 0, 1)
        dist = np.hypot(xx - a[0] - t * d[0], yy - a[1] - t * d[1])
        half = (wa + t * (wb - wa)) / 2
        c = np.clip(np.minimum(dist + 0.5, half) - np.maximum(dist - 0.5, -half), 0, 1)
        side = (d[0] * (yy - a[1]) - d[1] * (xx - a[0])) / max(np.hypot(*d), 1e-12)
        view = (slice(y0, y1 + 1), slice(x0, x1 + 1))
        better = c > cover[view]
        cover[view][better] = c[better]
        across[view][better] = np.clip(side / np.maximum(half, 0.5), -1, 1)[better]
    return cover, across


def coverage_mask(cover: np.ndarray) -> np.ndarray:
    """The mask rule: LINE where coverage >= 0.5, IGNORE where 0 < coverage < 0.5."""
    mask = np.full(cover.shape, BACKGROUND, np.uint8)
    mask[(cover > 0) & (cover < 0.5)] = IGNORE_INDEX
    mask[cover >= 0.5] = LINE
    return mask


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
    """Nadir (40 %) or oblique views, 50-80 degree field of view."""
    pitch = 0.0 if rng.random() < 0.4 else rng.uniform(np.radians(10), np.radians(68))
    return Camera(h, w, rng.uniform(np.radians(50), np.radians(80)), pitch, rng.uniform(0, 2 * np.pi))


def _backdrop(rng: Rng, cam: Camera, background: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """The scene behind the wires (float RGB) and which pixels see the ground (HxW bool)."""
    rays = cam.rays()
    on_ground = rays[..., 2] < -1e-3
    if background is not None:
        return background.astype(np.float32) / 255, np.ones(on_ground.shape, bool)
    size = 2 * max(cam.h, cam.w)
    cell = rng.uniform(0.5, 1.0) / cam.f  # ground cells per image pixel at nadir: 1-2
    to_ground = np.array([[cell, 0, -size / 2 * cell], [0, cell, -size / 2 * cell], [0, 0, 1]])
    img = cv2.warpPerspective(ground(rng, size), cam.ground_to_image() @ to_ground, (cam.w, cam.h),
                              flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    distance = 1 / np.maximum(-rays[..., 2], 1e-3)  # ray length to the ground per unit of height
    haze = (1 - np.exp(-(distance - 1) / rng.uniform(8, 30)))[..., None]
    sky = np.array([0.62, 0.70, 0.82], np.float32) * rng.uniform(0.8, 1.2)
    sky = sky + 0.08 * fractal(rng, cam.h, cam.w, 0.8, finest=4)[..., None]  # clouds
    img = np.where(on_ground[..., None], img + haze * (sky - img), sky)
    return img.astype(np.float32), on_ground


def _corridor(rng: Rng, cam: Camera, sun: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """One line corridor through the view: (Nx3 points, ground shadow Nx3) per conductor."""
    pixel = rng.uniform([0, 0], [cam.w, cam.h])
    ray = np.append(pixel, 1) @ np.linalg.inv(cam.K).T @ cam.R
    height = rng.uniform(0.15, 0.8)  # lowest point of the wires, in camera heights
    hit = cam.centre + ray * (height - 1) / min(ray[2], -1e-3)
    yaw = rng.uniform(0, 2 * np.pi)
    along, side = np.array([np.cos(yaw), np.sin(yaw), 0]), np.array([-np.sin(yaw), np.cos(yaw), 0])
    depth = max(1 - height, 0.05)
    # 1-4 px where the corridor crosses the chosen pixel; close inspection views up to 8 px
    wide = rng.random() < 0.25
    diameter = np.exp(rng.uniform(np.log(4.0), np.log(8.0)) if wide else rng.uniform(0, np.log(4.0))) * depth / cam.f
    span = rng.uniform(1.5, 6)
    sag = rng.uniform(0.005, 0.04) * span
    s = np.linspace(-3 * span, 3 * span, 600)
    phase = ((s - rng.uniform(0, span)) / span) % 1  # 0 and 1 at the towers
    k = rng.uniform(1, 4)
    drop = (np.cosh(k / 2) - np.cosh(k * (phase - 0.5))) / (np.cosh(k / 2) - 1)
    n_wires = int(rng.choice([1, 2, 3, 4, 6], p=[0.15, 0.3, 0.3, 0.15, 0.1]))
    spacing = rng.uniform(8, 50) * depth / cam.f
    per_tier = n_wires // 2 if rng.random() < 0.3 and n_wires >= 4 else n_wires  # one or two levels
    wires = []
    for i in range(n_wires):
        lateral = (i % per_tier - (per_tier - 1) / 2) * spacing * side
        pts = hit + s[:, None] * along + lateral
        pts[:, 2] = min(height + sag * drop.max() + 0.8 * spacing * (i // per_tier), 0.95) - sag * drop
        shadow = pts - pts[:, 2:3] / sun[2] * sun
        wires.append((pts, shadow, diameter))
    return wires


def _wire_albedo(rng: Rng, img: np.ndarray) -> np.ndarray:
    """HxWx3 albedo of a conductor as it reads against its local backdrop.

    Real conductors look dark against sky and bright ground and bright (specular) against
    dark vegetation; one fifth of the wires keep one grey throughout, so contrast can flip.
    """
    dark, bright = rng.uniform(0.1, 0.35), rng.uniform(0.5, 0.85)
    if rng.random() < 0.2:
        grey = np.full(img.shape[:2], dark if rng.random() < 0.5 else bright, np.float32)
    else:
        local = cv2.GaussianBlur(img.mean(-1), (0, 0), 4)
        t = np.clip((local - 0.3) / 0.25, 0, 1)
        grey = bright + t * (dark - bright)
    return (grey[..., None] * rng.normal(1, 0.03, 3)).astype(np.float32)


def _shadow(cam: Camera, shadow: np.ndarray, height: np.ndarray, diameter: float) -> np.ndarray:
    """Darkening (0-1) of a wire's shadow: wide and faint where the penumbra outgrows it."""
    xy, depth = cam.project(shadow)
    keep = depth > 0.05
    if keep.sum() < 2:
        return np.zeros((cam.h, cam.w), np.float32)
    penumbra = SUN_DISC * height[keep]
    cover, _ = stroke_coverage(cam.h, cam.w, xy[keep], (diameter + penumbra) * cam.f / depth[keep])
    return cover * float(np.median(diameter / (diameter + penumbra)))


def render_wires(rng: Rng, h: int, w: int, background: np.ndarray | None = None,
                 background_lines: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Draw one view from `rng`: an HxWx3 uint8 RGB image and its HxW uint8 mask.

    `background` (HxWx3 uint8, already h x w) replaces the procedural ground;
    `background_lines` (HxW coverage in [0, 1]) are the wires already in that photo: they
    join the rendered ones in the mask (and foliage drawn in front hides them too). It
    draws nothing from `rng`, so the image is the same with or without it.
    """
    cam = random_camera(rng, h, w)
    elevation, azimuth = rng.uniform(np.radians(25), np.radians(75)), rng.uniform(0, 2 * np.pi)
    sun = np.array([np.cos(azimuth) * np.cos(elevation), np.sin(azimuth) * np.cos(elevation),
                    np.sin(elevation)])
    img, on_ground = _backdrop(rng, cam, background)
    corridors = [_corridor(rng, cam, sun) for _ in range(rng.choice([0, 1, 2], p=[0.05, 0.8, 0.15]))]
    strength = rng.uniform(0.3, 0.7)
    for wires in corridors:
        for pts, shadow, diameter in wires:
            img *= 1 - (strength * on_ground * _shadow(cam, shadow, pts[:, 2], diameter))[..., None]
    cover = np.zeros((h, w), np.float32) if background_lines is None else background_lines.astype(np.float32)
    glints = 1 + 0.6 * fractal(rng, h, w, 1.0, finest=4)  # specular varies along each wire
    for wires in corridors:
        albedo, shine = _wire_albedo(rng, img), rng.uniform(0, 0.5)
        for pts, _, diameter in wires:
            xy, depth = cam.project(pts)
            keep = depth > 0.05
            if keep.sum() < 2:
                continue
            c, u = stroke_coverage(h, w, xy[keep], diameter * cam.f / depth[keep])
            light = 0.55 + 0.45 * np.sqrt(1 - u ** 2) + 0.25 * u * np.cos(azimuth)  # lit cylinder
            tone = albedo * light[..., None] + (shine * glints * np.exp(-(u / 0.35) ** 2))[..., None]
            img += c[..., None] * (tone - img)
            cover = np.maximum(cover, c)
    if rng.random() < 0.25:  # foliage in front hides parts of the wires
        leaves, alpha = occluder(rng, h, w)
        img += alpha[..., None] * (leaves - img)
        cover *= 1 - alpha
    return _sensor(rng, img, light_touch=background is not None), coverage_mask(cover)


def _sensor(rng: Rng, img: np.ndarray, light_touch: bool) -> np.ndarray:
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
