"""Small videos with the timing faults real footage has, generated with PyAV (for tests).

Every picture is 64x48 (:data:`W` x :data:`H`), grey with a red square whose position encodes
the frame number (:func:`draw`, read back by :func:`picture_number`), so a test can check both a
frame's time and which picture it is. Generators:

* :func:`write_video`: ordinary H.264 from given RGB frames at a constant rate;
* :func:`encode` + :func:`mux`: packets with any ``pts``/``dts`` (permuted, repeated, dropped);
* :func:`make_packed_b_avi`: a DivX-5-style AVI with packed B-frames;
* :func:`make_vfr_with_audio`: H.264 at given frame times with an AAC track as long as the video;
* :func:`scene_sound` + :func:`write_video_with_sound`: several cameras' videos of one scene's
  sound (claps and steps over room noise), each started at its own moment, each with its own
  microphone noise;
* :func:`stream_times`: what a player reads back (frame times, duration, audio length);
* :func:`people_frames`: larger pictures of standing figures moving sideways (for benchmarks).
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

W, H = 64, 48


def encode_all(container, stream, frames) -> None:
    """Encode every PyAV frame of ``frames`` (video or audio) with ``stream``, then flush the
    encoder, muxing each packet into ``container``."""
    for frame in frames:
        for pkt in stream.encode(frame):
            container.mux(pkt)
    for pkt in stream.encode():
        container.mux(pkt)


def write_video(path: Path, frames: list[np.ndarray], fps: int = 10, slots: list[int] | None = None) -> Path:
    """H.264 (yuv420p) at a constant ``fps`` from ``(H, W, 3)`` uint8 RGB frames (even sizes).
    ``slots``: each frame's place on the ``fps`` grid (its timestamp in frame intervals; default
    0, 1, 2, ...): increasing, with the places left out as dropped frames."""
    def video_frames():
        for i, img in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            if slots is not None:
                frame.pts, frame.time_base = slots[i], Fraction(1, fps)
            yield frame

    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        encode_all(c, s, video_frames())
    return path


def draw(i: int) -> np.ndarray:
    """Frame i (< 26): grey, with an 8x8 red square whose left edge is at x = 2 + 2 i."""
    assert 0 <= i < 26
    img = np.full((H, W, 3), 60, np.uint8)
    x = 2 + 2 * i
    img[16:24, x:x + 8] = (220, 30, 30)
    return img


def picture_number(img: np.ndarray) -> int:
    """Which draw(i) a decoded picture shows, from its red square's position."""
    m = (img[..., 0] > 150) & (img[..., 1] < 100)
    assert m.sum() > 30
    return int(round((np.nonzero(m)[1].mean() - 3.5 - 2) / 2))


def encode(codec: str, n: int, fps: int, *, b_frames: int = 0, gop: int = 6) -> list:
    """Encode draw(0..n-1) at ``fps``; packets in decode order, timestamps in 1/fps."""
    cc = av.CodecContext.create(codec, "w")
    cc.width, cc.height, cc.pix_fmt = W, H, "yuv420p"
    cc.time_base, cc.framerate = Fraction(1, fps), Fraction(fps)
    cc.gop_size = gop
    if codec == "libx264":
        cc.options = {"bf": str(b_frames), "keyint": str(gop), "min-keyint": str(gop),
                      "scenecut": "0"}
    else:
        cc.max_b_frames = b_frames
    packets = []
    for i in range(n):
        frame = av.VideoFrame.from_ndarray(draw(i), format="rgb24")
        frame.pts, frame.time_base = i, Fraction(1, fps)
        packets += cc.encode(frame)
    packets += cc.encode(None)
    return packets


def mux(path: Path, codec: str, fps: int, payloads: list, pts: list[int], dts: list[int],
        keys: list[bool], tb: Fraction) -> Path:
    """Mux raw packets with the given timestamps (units of ``tb``) into ``path``."""
    c = av.open(str(path), "w")
    s = c.add_stream(codec, rate=fps)
    s.width, s.height, s.pix_fmt = W, H, "yuv420p"
    s.time_base = tb
    for data, p, d, key in zip(payloads, pts, dts, keys):
        packet = av.Packet(bytes(data))
        packet.pts, packet.dts, packet.time_base = p, d, tb
        packet.is_keyframe = key
        packet.stream = s
        c.mux(packet)
    c.close()
    return path


def _n_vop(time_increment: int, bits: int) -> bytes:
    """An MPEG-4 part 2 "not coded" VOP: the placeholder DivX writes after a packed P+B chunk."""
    b = "01" "0" "1" + format(time_increment, f"0{bits}b") + "1" "0"  # P, vop_coded = 0
    b += "0" + "1" * ((8 - (len(b) + 1) % 8) % 8)  # stuffing to the byte boundary
    return b"\x00\x00\x01\xb6" + int(b, 2).to_bytes(len(b) // 8, "big")


def make_packed_b_avi(path: Path, n: int = 12, fps: int = 25) -> Path:
    """A DivX-5-style AVI: B-frames packed with the P-frame before them into one chunk, an N-VOP
    in the next chunk, and the "DivX503b1393p" user data that marks a packed bitstream."""
    packets = encode("mpeg4", n, fps, b_frames=1)  # decode order I0 P2 B1 P4 B3 ...
    data = [bytes(p) for p in packets]
    vop = data[0].find(b"\x00\x00\x01\xb6")
    data[0] = data[0][:vop] + b"\x00\x00\x01\xb2DivX503b1393p" + data[0][vop:]
    chunks, keys, k = [data[0]], [True], 1
    while k < len(data):
        if k + 1 < len(data) and packets[k + 1].pts < packets[k].pts:  # P then its B: pack
            n_vop = _n_vop(packets[k + 1].pts % fps, (fps - 1).bit_length())
            chunks += [data[k] + data[k + 1], n_vop]
            keys += [packets[k].is_keyframe, False]
            k += 2
        else:
            chunks.append(data[k])
            keys.append(packets[k].is_keyframe)
            k += 1
    assert len(chunks) == n and len(chunks[2]) < 10
    slots = list(range(n))
    return mux(path, "mpeg4", fps, chunks, slots, slots, keys, Fraction(1, fps))


def make_vfr_with_audio(path: Path, ticks: list[int], last: int, tb: Fraction) -> Path:
    """H.264 at the given frame times (units of ``tb``, last frame lasting ``last``) with a
    440 Hz AAC track as long as the video."""
    c = av.open(str(path), "w")
    s = c.add_stream("libx264", rate=30)
    s.width, s.height, s.pix_fmt = W, H, "yuv420p"
    s.codec_context.time_base = s.time_base = tb
    s.options = {"bf": "0"}
    durations = dict(zip(ticks, [b - a for a, b in zip(ticks, ticks[1:])] + [last]))
    a = c.add_stream("aac", rate=44100)
    a.layout = "mono"

    def put(packets: list) -> None:
        for p in packets:
            p.duration = durations[p.pts]
            c.mux(p)

    for i, t in enumerate(ticks):
        frame = av.VideoFrame.from_ndarray(draw(i), format="rgb24")
        frame.pts, frame.time_base = t, tb
        put(s.encode(frame))
    put(s.encode(None))
    sr = 44100
    x = (0.3 * np.sin(2 * np.pi * 440 * np.arange(int(sr * (ticks[-1] + last) * tb)) / sr))
    x = x.astype(np.float32)

    def audio_frame(k: int):
        f = av.AudioFrame.from_ndarray(x[None, k:k + 1024], format="flt", layout="mono")
        f.sample_rate, f.pts = sr, k
        return f

    encode_all(c, a, (audio_frame(k) for k in range(0, len(x), 1024)))
    c.close()
    return path


def scene_sound(rate: int = 48000, seconds: float = 60.0, seed: int = 0) -> np.ndarray:
    """``(rate * seconds,)`` float64 a scene's sound from its clock's -10 s on: room noise (2 %)
    and three short noise bursts a second (claps, steps: 30 ms, decaying in 5 ms) of random
    loudness."""
    rng = np.random.default_rng(seed)
    x = 0.02 * rng.standard_normal(int(seconds * rate))
    burst = np.arange(int(0.03 * rate))
    for t in rng.uniform(0.0, seconds, int(3 * seconds)):
        n = int(t * rate)
        part = rng.standard_normal(burst.size) * np.exp(-burst / (0.005 * rate)) * rng.uniform(0.2, 0.9)
        x[n:n + burst.size] += part[:max(0, min(burst.size, x.size - n))]
    return x


def write_video_with_sound(path: Path, start_s: float, sound: np.ndarray, seconds: float = 4.0, fps: int = 30,
                           rate: int = 48000, audio_codec: str = "pcm_s16le", seed: int = 0,
                           noise: float = 0.01, sound_delay_s: float = 0.0) -> Path:
    """A camera's video (MPEG-4 part 2, :func:`draw`'s pictures; ``.mkv`` for PCM, ``.mp4`` for
    AAC) of ``seconds`` that started ``start_s`` seconds into the scene of :func:`scene_sound`
    ``sound`` (``rate``, its sample at 10 s the scene's 0): its sound is the scene's from then,
    plus its microphone's own noise (``noise``, ``seed``); the sound stream starts
    ``sound_delay_s`` after the video (its first sample's timestamp; a camera's sound often
    starts a little apart from its pictures). The pictures: :func:`draw`'s first 26, over and over."""
    c = av.open(str(path), "w")
    v = c.add_stream("mpeg4", rate=fps)
    v.width, v.height, v.pix_fmt = W, H, "yuv420p"
    a = c.add_stream(audio_codec, rate=rate)  # (both streams before any packet: the header holds them)
    a.layout = "mono"

    def video_frame(i: int):
        f = av.VideoFrame.from_ndarray(draw(i % 26), format="rgb24")
        f.pts, f.time_base = i, Fraction(1, fps)
        return f

    encode_all(c, v, (video_frame(i) for i in range(int(seconds * fps))))
    delay = int(round(sound_delay_s * rate))
    first = int(round((start_s + 10.0) * rate)) + delay
    rng = np.random.default_rng(seed + 1000)
    x = np.clip(sound[first:first + int(seconds * rate)] + noise * rng.standard_normal(int(seconds * rate)), -1, 1)
    pcm = audio_codec.startswith("pcm_s16")

    def audio_frame(k: int):
        chunk = (x[k:k + 1024] * 32767).astype(np.int16) if pcm else x[k:k + 1024].astype(np.float32)
        f = av.AudioFrame.from_ndarray(chunk[None], format="s16" if pcm else "flt", layout="mono")
        f.sample_rate, f.pts, f.time_base = rate, k + delay, Fraction(1, rate)
        return f

    encode_all(c, a, (audio_frame(k) for k in range(0, len(x), 1024)))
    c.close()
    return path


def stream_times(path: Path) -> tuple[list[float], float, float | None]:
    """(video frame times pts * time_base in s, container duration s, audio duration s)."""
    c = av.open(str(path))
    try:
        v = c.streams.video[0]
        times = [float(f.pts * f.time_base) for f in c.decode(v)]
        audio = None
        if c.streams.audio:
            au = c.streams.audio[0]
            audio = float(au.duration * au.time_base) if au.duration else 0.0
        return times, c.duration / 1e6, audio
    finally:
        c.close()


def people_frames(n: int, size: tuple[int, int], people: int):
    """``n`` RGB frames ``(H, W, 3)`` uint8 of ``size`` ``(W, H)``: ``people`` figures of
    :func:`wbcap.testing.images.person_image` side by side, each in a slot ``W // people`` wide,
    the picture rolled 3 pixels to the right per frame (a generator)."""
    from wbcap.testing.images import person_image

    w, h = size
    slot = w // people
    base = np.concatenate([person_image(slot, h, seed=i) for i in range(people)], axis=1)
    base = np.pad(base, ((0, 0), (0, w - base.shape[1]), (0, 0)), mode="edge")
    for i in range(n):
        yield np.ascontiguousarray(np.roll(base, 3 * i, axis=1))
