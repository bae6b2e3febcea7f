"""Generated test pictures (no third-party media needed)."""

from __future__ import annotations

import cv2
import numpy as np


def person_image(width: int = 480, height: int = 640, seed: int = 0, people: int = 1) -> np.ndarray:
    """A deterministic picture of standing figure(s) on a textured background.

    Returns (height, width, 3) uint8 RGB. Each figure is drawn with filled ellipses and thick
    limbs (head, torso, arms, legs) in clothing-like colours, about 80% of the image height.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    bg = np.stack([90 + 60 * yy / height, 120 + 40 * xx / width, 150 - 50 * yy / height], -1)
    bg += rng.normal(0, 6, size=bg.shape)
    img = np.clip(bg, 0, 255).astype(np.uint8)
    for k in range(people):
        cx = int(width * (k + 1) / (people + 1))
        s = height * 0.8 / 8.0  # one "head" unit; a figure is ~8 heads tall
        top = int(height * 0.1)
        skin, shirt, pants = (224, 172, 140), tuple(int(c) for c in rng.integers(30, 220, 3)), (40, 50, 90)
        head_c = (cx, int(top + 0.5 * s))
        cv2.ellipse(img, head_c, (int(0.38 * s), int(0.5 * s)), 0, 0, 360, skin, -1, cv2.LINE_AA)
        neck, hip = (cx, int(top + 1.1 * s)), (cx, int(top + 3.9 * s))
        cv2.ellipse(img, (cx, int(top + 2.5 * s)), (int(0.85 * s), int(1.5 * s)), 0, 0, 360, shirt, -1, cv2.LINE_AA)
        th = max(2, int(0.35 * s))
        for side in (-1, 1):
            sh = (cx + side * int(0.8 * s), int(top + 1.5 * s))
            el = (cx + side * int(1.3 * s), int(top + 2.9 * s))
            wr = (cx + side * int(1.6 * s), int(top + 4.1 * s))
            cv2.line(img, sh, el, shirt, th, cv2.LINE_AA)
            cv2.line(img, el, wr, skin, int(th * 0.8), cv2.LINE_AA)
            cv2.circle(img, wr, int(th * 0.7), skin, -1, cv2.LINE_AA)
            hp = (cx + side * int(0.45 * s), hip[1])
            kn = (cx + side * int(0.55 * s), int(top + 5.9 * s))
            an = (cx + side * int(0.6 * s), int(top + 7.7 * s))
            cv2.line(img, hp, kn, pants, int(th * 1.3), cv2.LINE_AA)
            cv2.line(img, kn, an, pants, int(th * 1.1), cv2.LINE_AA)
            cv2.ellipse(img, (an[0] + side * int(0.15 * s), an[1] + int(0.1 * s)), (int(0.35 * s), int(0.15 * s)), 0, 0, 360, (30, 30, 30), -1)
        del neck
    return img
