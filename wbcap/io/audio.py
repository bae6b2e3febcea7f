"""A video file's sound, on the clock of its frames (``wbcap fuse --offsets audio``).

:func:`read_audio` decodes the first audio stream through PyAV, mixed to mono and resampled to
``rate`` samples a second by FFmpeg's resampler (:class:`av.AudioResampler`), and places its
first sample on the clock :func:`wbcap.io.video_reader.open_frames` gives the frames: seconds from
the file's time origin (:func:`wbcap.io.video_probe.file_time_origin`), so a sound and a frame of
one file keep the offset they were recorded with (an AAC stream's priming samples, a stream that
starts before or after the video, included). Gaps in the audio's timestamps are not filled: the
samples are taken as contiguous from the first.

Importing this module imports neither PyAV nor numpy.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wbcap.errors import InputError

__all__ = ["AudioTrack", "read_audio"]


@dataclass(frozen=True)
class AudioTrack:
    """A file's sound: ``samples (N,)`` float32 mono in [-1, 1], ``rate`` samples a second, the
    first sample at ``start_s`` seconds on the file's frame clock."""

    samples: Any
    rate: int
    start_s: float


def read_audio(path: str | os.PathLike[str], rate: int = 8000, max_seconds: float | None = None) -> AudioTrack:
    """The first audio stream of ``path`` (:class:`AudioTrack`), up to ``max_seconds`` of it.

    Raises:
        InputError: no such file, not a media file, no audio stream, or one that does not
            decode (one line naming the file and the fix).
    """
    import av
    import numpy as np

    from wbcap.io.video_probe import file_time_origin

    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: no such video file; give the run's video where it was (or --offsets as seconds)")
    origin = file_time_origin(p)
    try:
        container = av.open(str(p))
    except (av.FFmpegError, OSError) as exc:
        raise InputError(f"{p}: not a media file FFmpeg reads ({exc}); give --offsets as seconds") from None
    try:
        if not container.streams.audio:
            raise InputError(f"{p}: has no sound (no audio stream); use --offsets auto (the people's motion) or give "
                             "--offsets as seconds")
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
        chunks, start, total = [], None, 0
        limit = None if max_seconds is None else int(max_seconds * rate)
        try:
            for frame in container.decode(stream):
                if start is None and frame.pts is not None:
                    start = float(frame.pts * frame.time_base)
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
                    total += chunks[-1].size
                if limit is not None and total >= limit:
                    break
            else:
                for out in resampler.resample(None):  # (what the resampler holds back)
                    chunks.append(out.to_ndarray().reshape(-1))
        except av.FFmpegError as exc:
            if not chunks:
                raise InputError(f"{p}: its sound does not decode ({exc}); use --offsets auto or give --offsets as "
                                 "seconds") from None
    finally:
        container.close()
    samples = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
    if limit is not None:
        samples = samples[:limit]
    return AudioTrack(samples=samples, rate=rate, start_s=(start or 0.0) - float(origin))
