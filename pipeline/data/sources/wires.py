"""The `wires` renderer: conductors hanging in 3-D, seen by a UAV camera, with exact masks.

A pinhole camera (nadir, oblique, or side-on beside the line with the sky behind it; camera
height 1) looks at a textured ground plane (pipeline.data.sources.terrain), sometimes with
a tree close behind the wires (pipeline.data.sources.trees), or at a user's photo. Wire
widths are in pixels of the rendered image whatever its size (1-4 px, or 4-12 px for close
views), because a model segments photos at their own resolution. Each corridor holds parallel
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
from pipeline.data.sources.camera import Camera, random_camera, sensor
from pipeline.data.sources.terrain import fractal, ground, occluder
from pipeline.data.sources.trees import near_tree

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
    overcast = rng.random()  # 0: clear blue, 1: flat overcast grey
    colour = np.array([0.55, 0.65, 0.85]) + overcast * np.array([0.23, 0.14, -0.05])
    elevation = np.clip(rays[..., 2] / np.linalg.norm(rays, axis=-1), 0, 1)[..., None]
    sky = (colour * rng.uniform(0.7, 1.2)).astype(np.float32) * (1.1 - 0.2 * elevation)  # paler at the horizon
    sky = sky + (0.09 - 0.06 * overcast) * fractal(rng, cam.h, cam.w, 0.8, finest=4)[..., None]  # clouds
    img = np.where(on_ground[..., None], img + haze * (sky - img), sky)
    return img.astype(np.float32), on_ground


def _corridor(rng: Rng, cam: Camera, sun: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """One line corridor through the view: (Nx3 points, ground shadow Nx3) per conductor."""
    pixel = rng.uniform([0, 0], [cam.w, cam.h])
    ray = np.append(pixel, 1) @ np.linalg.inv(cam.K).T @ cam.R  # unit depth along the optical axis
    side_on = ray[2] >= -0.2  # level or looking up: flying beside the line, not above it
    if not side_on:  # looking down: the wires' lowest point, in camera heights
        height = rng.uniform(0.15, 0.8)
        depth = (height - 1) / ray[2]
    else:  # side-on or looking up: the wires at a distance, above or below the UAV
        depth = np.exp(rng.uniform(np.log(0.3), np.log(4.0)))
        height = float(np.clip(1 + depth * ray[2], 0.15, 3.0))
        if height != 1 + depth * ray[2]:  # clipped: move along the ray to that height
            depth = (height - 1) / ray[2]
    hit = cam.centre + ray * depth
    yaw = rng.uniform(0, 2 * np.pi)
    if side_on:  # beside the line, it crosses the view rather than running into it
        forward = cam.R[2]
        yaw = np.arctan2(forward[1], forward[0]) + np.pi / 2 + rng.uniform(-0.6, 0.6)
    along, side = np.array([np.cos(yaw), np.sin(yaw), 0]), np.array([-np.sin(yaw), np.cos(yaw), 0])
    # pixel width where the corridor crosses the chosen pixel: 1-4 px, or 4-12 px for close views
    wide = rng.random() < 0.45
    width = np.exp(rng.uniform(np.log(4.0), np.log(12.0)) if wide else rng.uniform(0, np.log(4.0)))
    diameter = width * depth / cam.f
    span = rng.uniform(1.5, 6)
    sag = rng.uniform(0.005, 0.04) * span
    s = np.linspace(-3 * span, 3 * span, 600)
    phase = ((s - rng.uniform(0, span)) / span) % 1  # 0 and 1 at the towers
    k = rng.uniform(1, 4)
    drop = (np.cosh(k / 2) - np.cosh(k * (phase - 0.5))) / (np.cosh(k / 2) - 1)
    n_wires = int(rng.choice([1, 2, 3, 4, 6], p=[0.15, 0.3, 0.3, 0.15, 0.1]))
    spacing = max(rng.uniform(8, 60), 3 * width) * depth / cam.f
    per_tier = n_wires // 2 if rng.random() < 0.3 and n_wires >= 4 else n_wires  # one or two levels
    wires = []
    for i in range(n_wires):
        lateral = (i % per_tier - (per_tier - 1) / 2) * spacing * side
        pts = hit + s[:, None] * along + lateral
        top = height + sag * drop.max() + 0.8 * spacing * (i // per_tier)
        pts[:, 2] = (min(top, 0.95) if height < 0.95 else top) - sag * drop  # never through the camera
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
    if background is None and rng.random() < 0.35:  # a tree close behind the wires
        leaves, alpha = near_tree(rng, h, w)
        img += alpha[..., None] * (leaves - img)
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
            keep = (depth > 0.05) & (diameter * cam.f < 60 * depth)  # not the span passing by the lens
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
    return sensor(rng, img, light_touch=background is not None), coverage_mask(cover)
