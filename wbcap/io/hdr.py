"""HDR and wide-gamut pictures brought to SDR: one rule for video frames and HEIF photos.

An iPhone records HLG video by default, cameras write HDR (PQ) HEIF photos; read as SDR, their
colours came out dull and dark (an iPhone user's trial, a review). FFmpeg's scaler (FFmpeg 8)
maps transfer characteristics and primaries when a frame's and the target's tags differ, so the
conversion here is a ``reformat`` to BT.709 tags (ITU-T H.273 codes: FFmpeg's ``AVCOL_*``).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

__all__ = ["BT709", "HDR_TRANSFERS", "WIDE_PRIMARIES", "frame_is_hdr", "hdr_kind", "pyav_maps_colours", "sdr_rgb24",
           "sdr_rgb24_of_rgb48"]

#: H.273's code for BT.709, as transfer characteristic and as primaries.
BT709 = 1
#: Transfer characteristics of HDR pictures: SMPTE ST 2084 (PQ, 16) and ARIB STD-B67 (HLG, 18).
HDR_TRANSFERS = {16: "PQ", 18: "HLG"}
#: Wide-gamut primaries: BT.2020 (9).
WIDE_PRIMARIES = {9: "BT.2020"}


def hdr_kind(transfer: int | None, primaries: int | None) -> str | None:
    """What makes a picture of these H.273 ``transfer`` and ``primaries`` codes HDR or wide-gamut,
    in words (``"HLG BT.2020"``, ``"PQ"``), or None for SDR (unknown codes count as SDR)."""
    words = [w for w in (HDR_TRANSFERS.get(int(transfer or 0)), WIDE_PRIMARIES.get(int(primaries or 0))) if w]
    return " ".join(words) or None


def frame_is_hdr(frame: Any) -> str | None:
    """:func:`hdr_kind` of a decoded ``av.VideoFrame``'s tags (PyAV's ``color_trc`` and
    ``color_primaries``; 0, SDR, where this PyAV has them not)."""
    return hdr_kind(getattr(frame, "color_trc", 0), getattr(frame, "color_primaries", 0))


@functools.lru_cache(maxsize=1)
def pyav_maps_colours() -> bool:
    """Whether this PyAV's ``reformat`` maps transfer and primaries (PyAV 18, which runs
    FFmpeg 8's ``sws_scale_frame``; PyAV 17 takes the target tags and converts nothing; PyAV 18
    needs Python 3.11)."""
    import av

    try:
        return int(str(av.__version__).split(".")[0]) >= 18
    except ValueError:
        return False


def sdr_rgb24(frame: Any, reformatter: Any = None, **kwargs: Any) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB of an ``av.VideoFrame``, brought to SDR BT.709 where it is HDR or
    wide-gamut (:func:`frame_is_hdr`) and this PyAV can (:func:`pyav_maps_colours`), else
    converted as tagged; ``kwargs``: ``reformat``'s others (size, interpolation, source range).

    ``reformatter``: an ``av.video.reformatter.VideoReformatter`` kept for a stream's frames:
    FFmpeg's scaler builds its tone-mapping table (about 1.4 s on a 2-core Zen 4) once per
    scaler, so a new one for every frame took 1.3-1.4 s a frame; kept, 2-3 ms (a 270x480 HLG
    clip). Without one, the frame's own (built anew each call)."""
    if frame_is_hdr(frame) and pyav_maps_colours():
        kwargs.update(dst_color_trc=BT709, dst_color_primaries=BT709)
    out = reformatter.reformat(frame, format="rgb24", **kwargs) if reformatter is not None else \
        frame.reformat(format="rgb24", **kwargs)
    return out.to_ndarray()


def sdr_rgb24_of_rgb48(rgb48: np.ndarray, transfer: int, primaries: int) -> np.ndarray:
    """``(H, W, 3)`` uint16 RGB (full range, the values scaled to 16 bits) of a picture of these
    H.273 codes as ``(H, W, 3)`` uint8 SDR BT.709 RGB (:func:`sdr_rgb24`)."""
    import av
    import numpy as np

    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb48), format="rgb48le")
    frame.color_trc, frame.color_primaries, frame.color_range = int(transfer), int(primaries), 2
    return sdr_rgb24(frame)
