"""ICC colour profiles made from a colour space's numbers, for tests of colour-managed reading: an
RGB matrix/TRC display profile (ICC.1:2001-04, version 2.1), as phones and cameras embed in their
photos (an iPhone's Display P3, Adobe RGB, sRGB), without a profile file from elsewhere.

:func:`rgb_matrix_profile` writes the profile of RGB primaries and a white point (CIE 1931 xy) with
sRGB's tone curve (IEC 61966-2-1), the colorants adapted to the PCS's D50 by the Bradford transform
(ICC.1 Annex E), so that littleCMS (Pillow's ``ImageCms``) converts between such profiles exactly
as the colour spaces' matrices do: :func:`rgb_to_xyz` gives them for the tests' expected values.
"""

from __future__ import annotations

import struct

import numpy as np

__all__ = ["DISPLAY_P3", "SRGB", "rgb_matrix_profile", "rgb_to_xyz", "srgb_decode", "srgb_encode"]

#: (red, green, blue, white) CIE 1931 xy of Display P3 (DCI-P3 primaries, D65 white: Apple's) and of sRGB.
DISPLAY_P3 = ((0.680, 0.320), (0.265, 0.690), (0.150, 0.060), (0.3127, 0.3290))
SRGB = ((0.640, 0.330), (0.300, 0.600), (0.150, 0.060), (0.3127, 0.3290))
_D50 = np.array([0.9642, 1.0, 0.8249])
_BRADFORD = np.array([[0.8951, 0.2664, -0.1614], [-0.7502, 1.7135, 0.0367], [0.0389, -0.0685, 1.0296]])


def _xyz(xy: tuple[float, float]) -> np.ndarray:
    x, y = xy
    return np.array([x / y, 1.0, (1 - x - y) / y])


def rgb_to_xyz(space: tuple) -> np.ndarray:
    """``(3, 3)``: linear RGB of ``space`` (:data:`DISPLAY_P3`, :data:`SRGB`) to CIE XYZ under its
    own white (Y of white 1)."""
    primaries = np.stack([_xyz(xy) for xy in space[:3]], axis=1)
    return primaries * np.linalg.solve(primaries, _xyz(space[3]))


def srgb_decode(v: np.ndarray) -> np.ndarray:
    """sRGB's tone curve, 0-1 signal to linear light (IEC 61966-2-1)."""
    v = np.asarray(v, np.float64)
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)


def srgb_encode(v: np.ndarray) -> np.ndarray:
    """The inverse of :func:`srgb_decode`."""
    v = np.clip(np.asarray(v, np.float64), 0, 1)
    return np.where(v <= 0.0031308, v * 12.92, 1.055 * v ** (1 / 2.4) - 0.055)


def _s15(v: float) -> bytes:
    return struct.pack(">i", round(v * 65536))


def _tag_xyz(xyz) -> bytes:
    return b"XYZ \0\0\0\0" + b"".join(_s15(v) for v in xyz)


def _tag_text(text: str) -> bytes:
    return b"text\0\0\0\0" + text.encode("ascii") + b"\0"


def _tag_desc(text: str) -> bytes:  # (textDescriptionType: ASCII, then empty Unicode and ScriptCode parts)
    ascii_ = text.encode("ascii") + b"\0"
    return b"desc\0\0\0\0" + struct.pack(">I", len(ascii_)) + ascii_ + struct.pack(">II", 0, 0) + b"\0\0\0" + bytes(67)


def _tag_curve(gamma: float | None) -> bytes:
    if gamma is not None:  # (a pure power law: its u8Fixed8 exponent)
        return b"curv\0\0\0\0" + struct.pack(">IH", 1, round(gamma * 256))
    table = np.round(srgb_decode(np.linspace(0, 1, 1024)) * 65535).astype(">u2")
    return b"curv\0\0\0\0" + struct.pack(">I", len(table)) + table.tobytes()


def rgb_matrix_profile(space: tuple = DISPLAY_P3, description: str = "Display P3", gamma: float | None = None) -> bytes:
    """An ICC display profile of the RGB colour space ``space`` (primaries and white, xy) with
    sRGB's tone curve (or ``gamma``'s power law: 1.0 for linear light), described as
    ``description`` (readers show this name)."""
    adapt = np.linalg.inv(_BRADFORD) @ np.diag((_BRADFORD @ _D50) / (_BRADFORD @ _xyz(space[3]))) @ _BRADFORD
    colorants = adapt @ rgb_to_xyz(space)
    curve = _tag_curve(gamma)
    tags = [(b"desc", _tag_desc(description)), (b"cprt", _tag_text("No copyright: made by wbcap's tests")),
            (b"wtpt", _tag_xyz(_D50)), (b"rXYZ", _tag_xyz(colorants[:, 0])), (b"gXYZ", _tag_xyz(colorants[:, 1])),
            (b"bXYZ", _tag_xyz(colorants[:, 2])), (b"rTRC", curve), (b"gTRC", curve), (b"bTRC", curve)]
    offset = 128 + 4 + 12 * len(tags)
    table, body = b"", b""
    for signature, data in tags:
        data += bytes(-len(data) % 4)  # (tags start on 4-byte boundaries)
        table += signature + struct.pack(">II", offset + len(body), len(data))
        body += data
    size = offset + len(body)
    header = (struct.pack(">I", size) + b"\0\0\0\0" + struct.pack(">I", 0x02100000) + b"mntrRGB XYZ "
              + struct.pack(">6H", 2026, 1, 1, 0, 0, 0) + b"acsp" + bytes(24) + struct.pack(">I", 0)
              + b"".join(_s15(v) for v in _D50) + bytes(4) + bytes(16) + bytes(28))
    return header + struct.pack(">I", len(tags)) + table + body
