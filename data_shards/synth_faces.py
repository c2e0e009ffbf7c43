"""Procedural faces: an identity (shape, skin, feature spacing) drawn with AU-driven features.

:func:`render_face` draws one face at 2x resolution with PIL and downsamples it (smooth edges).
Action units move the drawn features by amounts visible at 64 px: brows (AU1 inner raise, AU2
outer raise, AU4 lower and knit), lids (AU5 widen, AU7 tighten), cheeks (AU6 raised, lower lid
up), nose wrinkles (AU9), lip corners (AU12 up, AU15 down), chin (AU17), lips apart (AU25) and
jaw drop (AU26).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

AU_IDS = ["1", "2", "4", "5", "6", "7", "9", "12", "15", "17", "25", "26"]
SKIN_TONES = [(255, 224, 196), (241, 194, 160), (224, 172, 130), (198, 134, 96), (141, 85, 54), (95, 60, 40)]
HAIR_COLOURS = [(20, 15, 10), (70, 45, 25), (140, 95, 50), (200, 170, 100), (120, 120, 120), (160, 60, 30)]


@dataclass
class Identity:
    """The fixed look of one synthetic subject (all lengths are fractions of the image side)."""

    face_w: float
    face_h: float
    skin: tuple[int, int, int]
    hair: tuple[int, int, int]
    iris: tuple[int, int, int]
    eye_gap: float
    eye_y: float
    eye_w: float
    eye_h: float
    brow_gap: float
    brow_width: float
    nose_len: float
    mouth_y: float
    mouth_w: float
    lip: tuple[int, int, int]
    hair_top: float

    @classmethod
    def draw(cls, rng: np.random.Generator) -> "Identity":
        """A random identity."""
        skin = np.array(SKIN_TONES[rng.integers(len(SKIN_TONES))]) + rng.integers(-12, 13, 3)
        hair = np.array(HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))]) + rng.integers(-10, 11, 3)
        return cls(
            face_w=rng.uniform(0.30, 0.39),
            face_h=rng.uniform(0.39, 0.46),
            skin=tuple(int(v) for v in np.clip(skin, 0, 255)),
            hair=tuple(int(v) for v in np.clip(hair, 0, 255)),
            iris=tuple(int(v) for v in rng.integers(20, 140, 3)),
            eye_gap=rng.uniform(0.12, 0.17),
            eye_y=rng.uniform(-0.10, -0.04),
            eye_w=rng.uniform(0.075, 0.095),
            eye_h=rng.uniform(0.030, 0.040),
            brow_gap=rng.uniform(0.065, 0.085),
            brow_width=rng.uniform(0.024, 0.034),
            nose_len=rng.uniform(0.09, 0.13),
            mouth_y=rng.uniform(0.17, 0.21),
            mouth_w=rng.uniform(0.10, 0.14),
            lip=tuple(int(v) for v in np.clip(np.array(skin) * 0.3 + np.array([165, 45, 60]) * rng.uniform(0.5, 0.8), 0, 255)),
            hair_top=rng.uniform(0.25, 0.36),
        )


# Ranges of the per-image nuisance (``Pose.draw``). Real face crops vary in placement, scale,
# in-plane rotation, lighting (level, direction, colour) and background; so do these, while
# every AU-driven feature stays inside the frame (brows to chin at the largest scale and shift).
POSE_RANGES: dict[str, tuple[float, float]] = {
    "shift": (-0.06, 0.06),        # centre offset, fraction of the side (x and y)
    "scale": (0.82, 1.02),         # face size
    "roll": (-15.0, 15.0),         # in-plane rotation, degrees
    "light": (0.7, 1.2),           # overall brightness
    "gradient": (0.0, 0.45),       # strength of a directional light falloff across the image
    "tint": (-0.08, 0.08),         # per-channel white-balance shift
    "clutter": (0, 4),             # background shapes behind the face (integer range, upper bound excluded)
}


@dataclass
class Pose:
    """Per-image nuisance: placement, scale, rotation, lighting and background.

    ``Pose()`` is the canonical frontal, centred, evenly lit face on a flat grey background.
    """

    dx: float = 0.0
    dy: float = 0.0
    scale: float = 1.0
    light: float = 1.0
    background: tuple[int, int, int] = (128, 128, 128)
    roll: float = 0.0
    gradient: float = 0.0
    light_angle: float = 0.0
    tint: tuple[float, float, float] = (0.0, 0.0, 0.0)
    background2: tuple[int, int, int] | None = None
    clutter_seed: int = -1  # < 0: no clutter

    @classmethod
    def draw(cls, rng: np.random.Generator) -> "Pose":
        """A random pose from ``POSE_RANGES``."""
        r = POSE_RANGES
        return cls(
            dx=rng.uniform(*r["shift"]),
            dy=rng.uniform(*r["shift"]),
            scale=rng.uniform(*r["scale"]),
            light=rng.uniform(*r["light"]),
            background=tuple(int(v) for v in rng.integers(30, 226, 3)),
            roll=rng.uniform(*r["roll"]),
            gradient=rng.uniform(*r["gradient"]),
            light_angle=rng.uniform(0, 2 * np.pi),
            tint=tuple(float(v) for v in rng.uniform(*r["tint"], size=3)),
            background2=tuple(int(v) for v in rng.integers(30, 226, 3)),
            clutter_seed=int(rng.integers(2**31)),
        )


def _background(pose: Pose, big: int) -> Image.Image:
    """Flat colour, or a linear gradient to ``background2`` with a few random shapes on it."""
    if pose.background2 is None:
        return Image.new("RGB", (big, big), pose.background)
    ramp = np.linspace(0.0, 1.0, big, dtype=np.float32)
    ramp = ramp[None, :, None] if pose.light_angle < np.pi else ramp[:, None, None]
    a, b = np.array(pose.background, np.float32), np.array(pose.background2, np.float32)
    canvas = Image.fromarray(np.broadcast_to(a + (b - a) * ramp, (big, big, 3)).astype(np.uint8))
    if pose.clutter_seed >= 0:
        rng = np.random.default_rng(pose.clutter_seed)
        draw = ImageDraw.Draw(canvas)
        low, high = POSE_RANGES["clutter"]
        for _ in range(int(rng.integers(low, high))):
            x0, y0 = rng.uniform(-0.2, 1.0, 2) * big
            w, h = rng.uniform(0.15, 0.5, 2) * big
            fill = tuple(int(v) for v in rng.integers(20, 236, 3))
            (draw.ellipse if rng.random() < 0.5 else draw.rectangle)([x0, y0, x0 + w, y0 + h], fill=fill)
    return canvas


def _relight(canvas: np.ndarray, pose: Pose) -> np.ndarray:
    """A directional light falloff and a white-balance tint over the whole picture."""
    if pose.gradient == 0.0 and not any(pose.tint):
        return canvas
    size = canvas.shape[0]
    axis = (np.arange(size, dtype=np.float32) + 0.5) / size - 0.5
    along = np.cos(pose.light_angle) * axis[None, :] + np.sin(pose.light_angle) * axis[:, None]
    field = (1.0 + pose.gradient * along)[..., None] * (1.0 + np.array(pose.tint, np.float32))
    return np.clip(canvas.astype(np.float32) * field, 0, 255).astype(np.uint8)


def _shade(colour: tuple[int, int, int], factor: float) -> tuple[int, int, int]:
    return tuple(int(min(255, max(0, c * factor))) for c in colour)


def render_face(identity: Identity, aus: dict[str, float], pose: Pose, size: int) -> np.ndarray:
    """An RGB uint8 ``(size, size, 3)`` face with AU intensities ``aus`` (id -> [0, 1], absent = 0)."""
    a = {au: float(aus.get(au, 0.0)) for au in AU_IDS}
    big = size * 2
    s = big * pose.scale
    cx, cy = big * (0.5 + pose.dx), big * (0.52 + pose.dy)
    light = pose.light
    layer = Image.new("RGBA", (big, big), (0, 0, 0, 0))  # the face, rotated and composited onto the background
    draw = ImageDraw.Draw(layer)

    def box(x: float, y: float, rx: float, ry: float) -> list[float]:
        return [cx + (x - rx) * s, cy + (y - ry) * s, cx + (x + rx) * s, cy + (y + ry) * s]

    def pt(x: float, y: float) -> tuple[float, float]:
        return (cx + x * s, cy + y * s)

    skin = _shade(identity.skin, light)
    jaw = 0.05 * a["26"]
    draw.ellipse(box(0, -0.06, identity.face_w + 0.03, identity.face_h * 0.8), fill=_shade(identity.hair, light))
    draw.ellipse(box(0, jaw / 2, identity.face_w, identity.face_h + jaw / 2), fill=skin)
    draw.chord(box(0, -identity.hair_top, identity.face_w + 0.005, 0.16), 180, 360, fill=_shade(identity.hair, light))
    # cheeks (AU6): raised, rounder and rosier
    if a["6"] > 0:
        cheek = _shade((identity.skin[0], int(identity.skin[1] * 0.8), int(identity.skin[2] * 0.8)), light)
        for side in (-1, 1):
            draw.ellipse(box(side * (identity.eye_gap + 0.01), identity.eye_y + 0.09 - 0.03 * a["6"], 0.05 * a["6"] + 0.01, 0.035 * a["6"] + 0.008), fill=cheek)
    # eyes (AU5 widen, AU7 tighten, AU6 lower lid up)
    open_top = identity.eye_h * (1 + 1.0 * a["5"] - 0.55 * a["7"])
    open_bottom = identity.eye_h * (1 - 0.6 * a["6"] - 0.3 * a["7"])
    for side in (-1, 1):
        ex = side * identity.eye_gap
        ey = identity.eye_y
        draw.polygon(
            [pt(ex - identity.eye_w, ey), pt(ex - identity.eye_w / 2, ey - open_top), pt(ex + identity.eye_w / 2, ey - open_top),
             pt(ex + identity.eye_w, ey), pt(ex + identity.eye_w / 2, ey + open_bottom), pt(ex - identity.eye_w / 2, ey + open_bottom)],
            fill=(250, 250, 250), outline=_shade((60, 40, 30), light),
        )
        r = min(identity.eye_h * 0.9, open_top, open_bottom + 0.012)
        draw.ellipse(box(ex, ey, identity.eye_h * 0.9, max(r, 0.004)), fill=identity.iris)
        draw.ellipse(box(ex, ey, identity.eye_h * 0.35, max(min(r, identity.eye_h * 0.35), 0.003)), fill=(10, 10, 10))
    # brows (AU1 inner up, AU2 outer up, AU4 down and knit)
    brow = _shade(identity.hair, light * 0.8)
    for side in (-1, 1):
        inner_x = side * (0.035 - 0.012 * a["4"])
        outer_x = side * (identity.eye_gap + identity.eye_w)
        base = identity.eye_y - identity.brow_gap + 0.035 * a["4"]
        inner_y = base - 0.06 * a["1"] + 0.015 * a["4"]
        outer_y = base - 0.06 * a["2"] + 0.01
        draw.line([pt(inner_x, inner_y), pt(side * identity.eye_gap, base - 0.015 - 0.03 * (a["1"] + a["2"])), pt(outer_x, outer_y)],
                  fill=brow, width=max(2, int(identity.brow_width * s)), joint="curve")
    if a["4"] > 0:
        furrow = _shade(identity.skin, light * (1 - 0.45 * a["4"]))
        for side in (-1, 1):
            draw.line([pt(side * 0.012, identity.eye_y - 0.06), pt(side * 0.018, identity.eye_y - 0.02)], fill=furrow, width=max(1, int(0.008 * s)))
    # nose and its wrinkles (AU9)
    nose = _shade(identity.skin, light * 0.75)
    draw.line([pt(0.0, identity.eye_y + 0.02), pt(0.012, identity.eye_y + identity.nose_len), pt(-0.018, identity.eye_y + identity.nose_len + 0.015)], fill=nose, width=max(1, int(0.01 * s)))
    if a["9"] > 0:
        wrinkle = _shade(identity.skin, light * (1 - 0.7 * a["9"]))
        for k in range(3):  # lines at least 1 px wide at 64 px (thinner ones vanish in the downsampling)
            y = identity.eye_y + 0.02 + 0.018 * k
            draw.line([pt(-0.035, y), pt(0.035, y - 0.004)], fill=wrinkle, width=max(2, int(0.012 * s)))
    # mouth (AU12 corners up, AU15 corners down, AU25 lips apart, AU26 jaw drop, AU17 chin raise)
    my = identity.mouth_y + jaw * 0.5 - 0.01 * a["17"]
    half = identity.mouth_w * (1 + 0.35 * a["12"] - 0.1 * a["17"])
    corner = -0.07 * a["12"] + 0.07 * a["15"]
    if a["12"] > 0:  # smile lines from the nose wings to the raised corners
        fold = _shade(identity.skin, light * (1 - 0.6 * a["12"]))
        for side in (-1, 1):
            draw.line([pt(side * 0.05, identity.eye_y + identity.nose_len), pt(side * (half + 0.02), my + corner + 0.02)],
                      fill=fold, width=max(1, int(0.01 * s)))
    gap = 0.018 * a["25"] + 0.06 * a["26"]
    upper = [pt(-half, my + corner), pt(-half / 2, my - 0.012), pt(0, my - 0.006), pt(half / 2, my - 0.012), pt(half, my + corner)]
    lower = [pt(half, my + corner), pt(half / 2, my + 0.012 + gap), pt(0, my + 0.016 + gap), pt(-half / 2, my + 0.012 + gap), pt(-half, my + corner)]
    draw.polygon(upper + lower, fill=_shade(identity.lip, light))
    if gap > 0.004:
        inner = [pt(-half * 0.8, my + corner * 0.8), pt(0, my + 0.002), pt(half * 0.8, my + corner * 0.8), pt(0, my + gap + 0.004)]
        draw.polygon(inner, fill=(60, 15, 20))
    if a["15"] > 0:  # creases running down from the lowered corners
        crease = _shade(identity.skin, light * (1 - 0.6 * a["15"]))
        for side in (-1, 1):
            draw.line([pt(side * half, my + corner), pt(side * (half + 0.01), my + corner + 0.05)], fill=crease, width=max(1, int(0.012 * s)))
    if a["17"] > 0:
        chin = _shade(identity.skin, light * (1 - 0.6 * a["17"]))
        draw.arc(box(0, my + 0.075, 0.05, 0.03), 200, 340, fill=chin, width=max(2, int(0.016 * s)))
    if pose.roll:
        layer = layer.rotate(pose.roll, resample=Image.Resampling.BICUBIC, center=(cx, cy))
    canvas = _background(pose, big)
    canvas.paste(layer, (0, 0), layer)
    return _relight(np.asarray(canvas.resize((size, size), Image.Resampling.BOX)), pose)
