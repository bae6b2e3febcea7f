"""Still-image loading: one decoder, one pixel convention.

Every image inside wbcap is a ``numpy.ndarray`` of shape ``(H, W, 3)``, dtype ``uint8``, **RGB**
channel order, row 0 at the top of the upright picture. :func:`load_image` turns whatever the
file holds into that:

* Decoding is OpenCV's (``cv2.imdecode`` of the file's bytes with ``IMREAD_UNCHANGED``), the
  decoder of the reference implementation, so 8-bit pixels match it exactly.
* Grayscale is replicated to 3 channels; a grey+alpha image keeps its grey channel.
* Alpha is **dropped**, not composited: the stored colour of every pixel is kept, which is what
  ``cv2.imread`` (the reference's loader) does. Compositing over black would darken
  semi-transparent edges and change pixels compared with the reference.
* 16-bit samples become 8-bit as ``round(v / 257)`` (65535 -> 255, exact for 8-bit values stored
  in 16 bits as ``v * 257``).
* The EXIF orientation tag is applied (read with Pillow, rotated with numpy), for any format that
  carries one (JPEG in practice; OpenCV's TIFF decoder turns a TIFF itself, so it is turned
  once). The reference implementation ignores it and so sees phone photos sideways; users expect
  the upright picture they see in every viewer.
* A truncated JPEG or PNG is an error (OpenCV returns a partly grey image with only a warning).
  So is a JPEG whose entropy-coded data libjpeg-turbo finds damaged in the middle (a hole of
  zeros, a stray marker): OpenCV decodes the rest of that scan grey and only prints libjpeg's
  warning. The check decodes the file once more with ``simplejpeg`` in strict mode, which
  raises on those warnings (not on "extraneous bytes before marker", which many cameras write
  and which loses no pixels).
* An image of more than :data:`MAX_IMAGE_PIXELS` pixels is refused from its headers, before it
  is decoded (a 2.5 MB PNG can hold 50000 x 50000 pixels: 7.5 GB decoded).

User mistakes (missing file, a folder, not an image, truncated or empty file, too many pixels) raise
:class:`wbcap.errors.InputError` with one line naming the file and the fix.
"""

from __future__ import annotations

import contextlib
import functools
import glob
import io
import itertools
import logging
import os
import re
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Literal

import numpy as np

from wbcap.console import shell_word
from wbcap.errors import InputError

log = logging.getLogger(__name__)

#: File name endings (lower case) that :func:`iter_image_paths` treats as images.
IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".dib", ".tif", ".tiff", ".webp",
     ".pbm", ".pgm", ".ppm", ".pnm", ".jp2", ".gif", ".avif", ".heic", ".heif", ".hif"}
)

#: Picture file endings (lower case) wbcap does not read (no decoder it uses takes them): a
#: folder input skips them with a warning (:func:`iter_image_paths`), rather than silently as
#: other files.
UNREAD_PICTURE_EXTENSIONS: frozenset[str] = frozenset(
    {".jxl", ".svg", ".psd", ".ico", ".tga", ".dng", ".cr2", ".cr3", ".nef",
     ".arw", ".orf", ".rw2", ".raf"}
)

_EXIF_ORIENTATION_TAG = 0x0112
_JPEG_SOI = b"\xff\xd8"
_JPEG_EOI = b"\xff\xd9"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_IEND = b"IEND\xaeB`\x82"
_GLOB_CHARS = re.compile(r"[*?\[]")

#: The most pixels (width x height) :func:`load_image` takes: 2**28 = 268,435,456, a 16384 x 16384
#: picture. It admits every ordinary photo: 100-megapixel medium format, 200 MP phones (16320 x
#: 12240), 240 MP pixel-shift composites (19008 x 12672); decoded, such a picture already takes
#: 805 MB and drawing the overlay on it about 4 times that. Bigger ones (stitched panoramas,
#: 400 MP multi-shot composites, decompression bombs) are refused: scale them down first.
MAX_IMAGE_PIXELS = 2**28
_PILLOW_LOCK = threading.Lock()


def path_kind(path: str | os.PathLike[str]) -> Literal["folder", "file", "pattern", "missing"]:
    """How the readers of frames (:func:`iter_image_paths`, :func:`wbcap.io.video_reader.open_frames`)
    take ``path`` (``~`` expanded), in this order: an existing ``"folder"``; an existing
    ``"file"`` (also one whose name holds ``*``, ``?`` or ``[``); a glob ``"pattern"`` (``*``,
    ``?`` or ``[`` in it); else ``"missing"``."""
    p = Path(path).expanduser()
    if p.is_dir():
        return "folder"
    if p.exists():
        return "file"
    return "pattern" if _GLOB_CHARS.search(str(path)) else "missing"


def missing_path_message(path: Path, what: str = "file or folder") -> str:
    """The one line for an input ``path`` that leads to nothing: a symbolic link to nothing (a
    dangling one, or a loop of links: a break-it trial was told such a link did not exist), said
    as such with its target; else ``no such {what}``."""
    if path.is_symlink():
        try:
            target = os.readlink(path)
        except OSError:
            target = "?"
        return (f"{path}: is a symbolic link to {target}, which leads to no file (the link is broken, or a loop "
                "of links); fix or remove the link")
    return f"{path}: no such {what}; check the path"


def pattern_root(pattern: str | os.PathLike[str]) -> Path:
    """The folder a glob ``pattern`` searches (``~`` expanded): its parts before the first one
    holding a wildcard (``shots/c[12]/*.png`` -> ``shots``; ``*.png`` -> ``.``)."""
    parts = Path(pattern).expanduser().parts
    wild = next((i for i, part in enumerate(parts) if _GLOB_CHARS.search(part)), len(parts))
    return Path(*parts[:wild])


def load_image(path: str | os.PathLike[str], orientation: bool = True, damaged: Literal["refuse", "warn"] = "refuse",
               srgb: bool = True) -> np.ndarray:
    """Read one image file as an upright RGB picture.

    Args:
        path: an image file (any format OpenCV reads: JPEG, PNG, BMP, TIFF, WebP, PNM, ...; and
            GIF, its first frame as FFmpeg decodes it, :func:`_decode_gif`; AVIF,
            :func:`_decode_avif`; HEIC, :func:`_decode_heic`).
        orientation: turn the picture upright by its EXIF orientation; False: the pixels as
            stored (a dataset's annotations refer to them). An HEIC comes upright either way:
            its decoder applies its turn, as HEIF readers must.
        damaged: what a truncated or corrupt file that still decodes gets: ``"refuse"`` (an
            InputError), or ``"warn"``: the message as a warning, and the pixels as decoded
            (the part lost grey), as OpenCV (or, for a GIF, FFmpeg) gives them (a dataset's image: one such image in a
            training set must not end a run of days, and upstream evaluated what OpenCV decoded).
        srgb: bring a picture whose embedded ICC profile is of another RGB colour space (an
            iPhone's Display P3, a camera's Adobe RGB) to sRGB, the colours every output is
            written in (:func:`_to_srgb`); False: the values as stored, as decoded (OpenCV's,
            libheif's, Pillow's: a dataset's, as upstream read them).

    Returns:
        ``(H, W, 3)`` ``uint8`` array, RGB, C-contiguous, ``H``/``W`` of the upright picture
        (after the EXIF orientation, so a portrait phone photo has ``H > W``; as stored
        without ``orientation``).

    Raises:
        InputError: the file is missing, a folder, empty, not a readable image, truncated, has
            more than :data:`MAX_IMAGE_PIXELS` pixels (read from its headers, before decoding),
            or has a pixel type other than 8- or 16-bit integers.
    """
    p = Path(path)
    data = _read_bytes(p)
    header = _header_size(io.BytesIO(data))
    if header is not None:
        check_pixel_count(p, header[1], header[0])
    # (before OpenCV, which prints libjpeg's warnings and libpng's errors to stderr: "libpng error: PNG
    # input buffer is incomplete" beside wbcap's line for a cut PNG, a batch trial)
    damage = (_damage(p, damaged, _check_jpeg_data, data) or _damage(p, damaged, _check_complete, data)
              or _damage(p, damaged, _check_png_data, data))
    buf = np.frombuffer(data, dtype=np.uint8)

    import cv2

    avif, heic = is_avif(data[:SNIFF_BYTES]), is_heic(data[:SNIFF_BYTES])
    # A damaged PNG (``"warn"``) is not given to OpenCV: libpng stops at the damage, so OpenCV
    # decodes none of it, and libpng prints its own lines to stderr on the way, which no log level
    # holds ("libpng error: PNG input buffer is incomplete" beside the warning, in training's loader)
    unreadable_png = damage is not None and data.startswith(_PNG_SIGNATURE)
    try:  # (AVIF by Pillow whatever OpenCV's build: its turn and bit depth handled one way)
        with _quiet_opencv(cv2):
            decoded = (None if unreadable_png else _decode_avif(p, data) if avif else _decode_heic(p, data) if heic
                       else cv2.imdecode(buf, cv2.IMREAD_UNCHANGED))
    except cv2.error as exc:  # (e.g. more pixels than OpenCV's own limit, in a format Pillow cannot size)
        log.debug("OpenCV cannot decode %s: %s", p, exc)
        decoded = None
    if decoded is not None and decoded.size:
        check_pixel_count(p, decoded.shape[1], decoded.shape[0])
    if (decoded is None or decoded.size == 0) and damage is not None and not unreadable_png:
        # ("warn": imdecode gives up on a cut JPEG that imread decodes in part; its size was checked
        # from the header above)
        with _quiet_opencv(cv2):
            decoded = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
    if (decoded is None or decoded.size == 0) and data.startswith(_GIF_SIGNATURES):
        decoded = _decode_gif(p, data)
    if decoded is None or decoded.size == 0:
        if damage is not None:  # ("warn": the damage found above is why, e.g. a PNG chunk's CRC)
            raise InputError(damage)
        _check_complete(p, data)  # a cut-off JPEG/PNG gets the more helpful message
        container = video_container(data[:SNIFF_BYTES], len(data))
        if container is not None:
            suffix = VIDEO_SUFFIX[container]  # (a rename only where the name is a picture's: a new user's trial)
            rename = "" if p.suffix.lower() == suffix or is_moving_picture_name(p) else f" (best renamed {p.stem}{suffix})"
            raise InputError(f"{p}: holds a video ({container}), not a picture; give it to `wbcap run` on its own"
                             f"{rename}")
        kind = _decodable_kind(data)
        if kind is not None:  # (a cut TIFF or WebP was told to pass a TIFF or WebP: a batch trial)
            raise InputError(f"{p}: {kind} file is truncated or corrupt (its pixels do not decode); re-download or "
                             "re-export it")
        moving = is_moving_picture_name(p)  # (`wbcap run` reads them: a user trial)
        raise InputError(f"{p}: not an image wbcap can decode; pass a JPEG, PNG, BMP, TIFF, WebP, GIF, AVIF or HEIC file"
                         + (" (a video: `wbcap run` reads it frame by frame)" if moving else ""))
    if damage is not None:
        log.warning("%s (used as decoded)", damage)

    if _animated(data):
        from wbcap.errors import in_command

        reader = f"`wbcap run {p}`" if in_command() else f"run_video(VideoJob(source={str(p)!r}))"
        log.warning("%s: %s (for all of them, %s)", p,
                    "an HEIC of several pictures; only its primary one is used" if heic  # (not always the first one)
                    else "an animated or multi-page image; only its first frame is used",
                    f"{reader} reads it frame by frame" if data.startswith(_GIF_SIGNATURES)
                    else "convert it to a video and use `wbcap run`")
    # (an HEIC's EXIF orientation, which phones write beside its irot, no longer applies: decoded upright)
    tag = None if heic else _exif_orientation(data) if orientation or data.startswith(_TIFF_SIGNATURES) else None
    turned = tag not in (None, 1) and _turned_by_decoder(data, decoded, tag)
    rgb = _to_rgb8(p, decoded)
    if srgb:
        rgb = _to_srgb(p, rgb, data, heic)
    if orientation and tag not in (None, 1) and not turned:
        rgb = apply_exif_orientation(rgb, tag)
    elif not orientation and turned:  # (the pixels as stored: the decoder's turn undone)
        rgb = apply_exif_orientation(rgb, _UNTURN.get(tag, tag))
    return np.ascontiguousarray(rgb)


def _to_srgb(p: Path, rgb: np.ndarray, data: bytes, heic: bool) -> np.ndarray:
    """``rgb`` (``(H, W, 3)`` uint8, the file's stored values) in sRGB: converted by littleCMS
    (Pillow's ``ImageCms``, relative colorimetric: white kept, colours outside sRGB clipped) from
    the colour space of the ICC profile embedded in ``data`` (a JPEG's ``APP2``, a PNG's
    ``iCCP``, a WebP's ``ICCP``, a TIFF's tag, an AVIF's or HEIC's ``colr``), where it is another
    RGB one: iPhones tag their photos Display P3 (some cameras Adobe RGB), whose values read as
    sRGB's came out duller in every output (the renders too). Unchanged without a profile, with sRGB's
    (:func:`_srgb_transform`) or one of another kind (grey, CMYK), or with one littleCMS cannot
    read (said at debug level)."""
    profile = _icc_profile(data, heic)
    if profile is None:
        return rgb
    try:
        transform = _srgb_transform(profile)
        if transform is None:
            return rgb
        from concurrent.futures import ThreadPoolExecutor

        from PIL import Image, ImageCms

        from wbcap.limits import available_cpus

        out = np.empty_like(rgb)  # (a new array: writable, as every other picture is)

        def convert(rows: slice) -> None:  # (littleCMS lets go of the GIL: strips convert side by side)
            out[rows] = np.asarray(ImageCms.applyTransform(Image.fromarray(rgb[rows]), transform))

        strips = max(1, min(available_cpus(), 4, rgb.shape[0] // 512))
        bounds = np.linspace(0, rgb.shape[0], strips + 1).astype(int)
        with ThreadPoolExecutor(strips) as pool:
            list(pool.map(convert, [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])]))
        return out
    except Exception as exc:  # (ImageCms.PyCMSError, OSError: a damaged profile; its values kept)
        log.debug("%s: its ICC profile cannot be used (%s): its values read as sRGB", p, exc)
        return rgb


def _icc_profile(data: bytes, heic: bool) -> bytes | None:
    """The ICC profile embedded in a picture file's bytes, or None (none, or headers that do not
    parse: the picture itself decoded)."""
    try:
        if heic:  # (not an HDR one's: brought to SDR BT.709 by its nclx, _decode_heic)
            import pi_heif

            from wbcap.io.hdr import hdr_kind

            info = pi_heif.open_heif(io.BytesIO(data)).info
            nclx = info.get("nclx_profile") or {}
            if hdr_kind(nclx.get("transfer_characteristics"), nclx.get("color_primaries")):
                return None
            return info.get("icc_profile") or None
        with _open_pillow(io.BytesIO(data)) as im:
            return im.info.get("icc_profile") or None
    except Exception:  # (a header Pillow or libheif does not take)
        return None


@functools.lru_cache(maxsize=4)
def _srgb_transform(profile: bytes):
    """littleCMS's transform from the RGB colour space of ``profile`` (ICC bytes) to sRGB, or None
    where ``profile`` is not an RGB one, or is sRGB's: named so (not a linear-light "sRGB"; the
    v4 "sRGB v4 ICC preference" profile, whose black littleCMS lifts to 29, by its name) or
    converting a grid of colours to themselves within a level (an sRGB profile under another
    name, a compact "c2"). Kept for a few profiles: an image sequence's pictures share their
    camera's.

    Raises:
        PIL.ImageCms.PyCMSError, OSError: a profile littleCMS cannot read.
    """
    from PIL import Image, ImageCms

    source = ImageCms.ImageCmsProfile(io.BytesIO(profile))
    name = (source.profile.profile_description or "").lower()
    if source.profile.xcolor_space.strip() != "RGB" or ("srgb" in name and "linear" not in name):
        return None
    transform = ImageCms.buildTransform(source, ImageCms.createProfile("sRGB"), "RGB", "RGB",
                                        renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC)
    grid = np.stack(np.meshgrid(*[np.linspace(0, 255, 6).astype(np.uint8)] * 3, indexing="ij"), -1).reshape(1, -1, 3)
    probe = np.asarray(ImageCms.applyTransform(Image.fromarray(grid), transform)).astype(int)
    return None if np.abs(probe - grid).max() <= 1 else transform


#: The orientation tag whose turn undoes each tag's: a quarter turn one way undoes the other
#: (6 and 8); the mirrors, the half turn, the transpose and the transverse undo themselves.
_UNTURN = {6: 8, 8: 6}


_TIFF_SIGNATURES = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # (classic and BigTIFF, both byte orders)
_GIF_SIGNATURES = (b"GIF87a", b"GIF89a")
GIF_TRAILER = b"\x00\x3b"  # (the last block's zero terminator, then the trailer: ";" alone ends 1 cut in 256)


def _decode_gif(p: Path, data: bytes) -> np.ndarray:
    """A GIF's first frame as OpenCV would give a picture, ``(H, W, 3)`` uint8 BGR, decoded by
    FFmpeg (PyAV) as `wbcap run` decodes it (the OpenCV wheels decode no GIF; a still GIF was
    refused: a user trial), so `wbcap image` and `wbcap run` of a GIF see the same first frame:
    the GIF's logical screen, a frame placed inside it on its background, transparent pixels
    white (Pillow painted palette entry 0 around an offset frame and grew the picture to a frame
    past the screen's edge: a break-it trial).

    Raises:
        InputError: FFmpeg cannot decode a frame of it (truncated, corrupt, a 0 x 0 screen).
    """
    import av

    from wbcap.io.video_reader import frame_rgb

    try:
        with av.open(io.BytesIO(data), mode="r", metadata_errors="replace") as container:
            frame = next(container.decode(video=0), None)
            rgb = None if frame is None else frame_rgb(frame)
    except (av.FFmpegError, ValueError, IndexError) as exc:  # (IndexError: no video stream)
        log.debug("FFmpeg cannot decode %s: %s", p, exc)
        rgb = None
    if rgb is None or rgb.size == 0:
        raise InputError(f"{p}: GIF file is truncated or corrupt; re-download or re-export it")
    return np.ascontiguousarray(rgb[:, :, ::-1])


def _ftyp_brands(head: bytes) -> tuple[bytes, list[bytes]] | None:
    """``(major brand, compatible brands)`` of the ISO-BMFF ``ftyp`` box a file's first bytes
    begin with (ISO/IEC 14496-12, 4.3), or None where they begin no such box of a plausible size."""
    box_size = int.from_bytes(head[:4], "big")
    if head[4:8] != b"ftyp" or not 16 <= box_size <= 4096:
        return None
    return head[8:12], [head[k:k + 4] for k in range(16, min(box_size, len(head)) - 3, 4)]


def is_avif(head: bytes) -> bool:
    """Whether a file's first bytes begin an AVIF picture as Pillow's decoder takes one: an
    ISO-BMFF ``ftyp`` box whose major brand is ``avif`` (a still), ``avis`` (a sequence; AV1 Image
    File Format spec, section 9), or HEIF's ``mif1``/``msf1`` with ``avif``/``avis`` among its
    compatible ones."""
    brands = _ftyp_brands(head)
    if brands is None:
        return False
    major, compatible = brands
    return major in (b"avif", b"avis") or (major in (b"mif1", b"msf1") and bool({b"avif", b"avis"} & set(compatible)))


#: ``ftyp`` brands of HEIF files whose pictures are HEVC-coded, HEIC (ISO/IEC 23008-12, Annex
#: B: images and image collections, sequences, with and without range extensions, layered).
_HEIC_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs"})


def is_heic(head: bytes) -> bool:
    """Whether a file's first bytes begin an HEIC picture (HEVC in HEIF, as iPhones save photos
    and cameras their ``.hif`` files): an ISO-BMFF ``ftyp`` box whose major brand is an HEVC one
    (:data:`_HEIC_BRANDS`), or HEIF's ``mif1``/``msf1`` with one among its compatible ones; not
    an AVIF (:func:`is_avif`)."""
    brands = _ftyp_brands(head)
    if brands is None or is_avif(head):
        return False
    major, compatible = brands
    return major in _HEIC_BRANDS or (major in (b"mif1", b"msf1") and bool(_HEIC_BRANDS & set(compatible)))


#: The widest (and tallest) picture libavif decodes (its default ``imageDimensionLimit``).
AVIF_MAX_SIDE = 32768


def _ispe_size(data: bytes) -> tuple[int, int] | None:
    """``(width, height)`` a HEIF's (an AVIF's, an HEIC's) ``ispe`` property declares (ISO/IEC
    23008-12, 6.5.3: a full box, then two 32-bit sizes), its first one (the primary item's in the
    files libavif and libheif write; a tile's where a writer lists a tile's first: the decoder's
    own size is checked again before decoding), or None where there is none in the file's first
    64 KB."""
    at = data.find(b"ispe", 0, 1 << 16)
    if at < 4 or len(data) < at + 16:
        return None
    return int.from_bytes(data[at + 8:at + 12], "big"), int.from_bytes(data[at + 12:at + 16], "big")


def _decode_avif(p: Path, data: bytes) -> np.ndarray:
    """An AVIF picture (its first frame) as OpenCV would give a picture, ``(H, W, 3|4)`` uint8
    BGR(A), as stored: decoded by Pillow (11.3 or later, with libavif: the OpenCV wheels decode no
    AVIF, which phones and browsers save; a hostile-media trial's were skipped). Its ``irot`` /
    ``imir`` turn is Pillow's EXIF orientation tag, which :func:`load_image` applies as a JPEG's.

    Raises:
        InputError: this Pillow has no AVIF decoder (with the upgrade), or the file is damaged.
    """
    from PIL import features

    if not features.check("avif"):
        import PIL

        # (a Pillow new enough but built without libavif, from a distribution or source: upgrading changes nothing)
        old = tuple(int(v) for v in re.findall(r"\d+", PIL.__version__)[:2]) < (11, 3)
        how = ("`pip install -U 'pillow>=11.3'`" if old else
               "install PyPI's Pillow wheel, which has it (`pip install --force-reinstall pillow`)")
        raise InputError(f"{p}: an AVIF picture, which this Pillow ({PIL.__version__}) cannot decode "
                         f"({'too old' if old else 'built without libavif'}): {how}, or convert it to JPEG or PNG")
    size = _ispe_size(data)  # (from its header: libavif refuses a side over 32768 as it refuses a damaged file)
    if size is not None:
        check_pixel_count(p, *size)
        if max(size) > AVIF_MAX_SIDE:
            raise InputError(f"{p}: the image is {size[0]}x{size[1]} pixels, wider or taller than the AVIF decoder "
                             f"(libavif) takes ({AVIF_MAX_SIDE} pixels); scale it down or convert it to PNG first")
    try:
        with _open_pillow(io.BytesIO(data)) as im:
            check_pixel_count(p, *im.size)
            im.seek(0)
            rgb = np.asarray(im.convert("RGBA" if "A" in im.getbands() else "RGB"))
    except InputError:
        raise
    except Exception as exc:  # (Pillow's and libavif's errors for a damaged file)
        log.debug("Pillow cannot decode %s: %s", p, exc)
        raise InputError(f"{p}: AVIF file is truncated or corrupt; re-download or re-export it") from None
    return np.ascontiguousarray(rgb[:, :, [2, 1, 0, 3][: rgb.shape[2]]])


def _decode_heic(p: Path, data: bytes) -> np.ndarray:
    """An HEIC picture (its primary image) as OpenCV would give a picture, ``(H, W, 3|4)`` uint8
    BGR(A) or ``(H, W)`` grey, upright: decoded by libheif through pi-heif (a dependency, decoder
    only: OpenCV and Pillow decode no HEIC, which iPhones save by default). libheif puts a tiled
    picture's tiles together, turns and mirrors it by its ``irot`` / ``imir`` properties (HEIF
    readers must; the file's EXIF orientation, which phones write beside them, then no longer
    applies) and brings 10- and 12-bit pictures to 8 bits; an HDR or BT.2020 one (its ``nclx``
    colour: a camera's PQ HEIF) is brought to SDR BT.709 as HDR video is (:mod:`wbcap.io.hdr`; a
    Display P3 one tagged by its ``nclx`` alone, not by an ICC profile, is read as sRGB).

    Raises:
        InputError: pi-heif is not installed (how to install it), the picture has more than
            :data:`MAX_IMAGE_PIXELS` pixels (from its header, before decoding), or the file is
            damaged or holds no picture libheif decodes.
    """
    from wbcap.io.hdr import hdr_kind, pyav_maps_colours, sdr_rgb24_of_rgb48

    try:
        import pi_heif
    except ImportError:
        raise InputError(f"{p}: an HEIC picture, and its decoder is not installed: `pip install pi-heif` (wbcap's "
                         "install brings it), or convert it to JPEG or PNG") from None
    size = _ispe_size(data)
    if size is not None:
        check_pixel_count(p, *size)
    try:
        heif = pi_heif.open_heif(io.BytesIO(data), convert_hdr_to_8bit=True, bgr_mode=True)  # (headers only yet)
        check_pixel_count(p, *heif.size)
        nclx = heif.info.get("nclx_profile") or {}
        transfer, primaries = nclx.get("transfer_characteristics"), nclx.get("color_primaries")
        if hdr_kind(transfer, primaries) and pyav_maps_colours() and heif.mode in ("RGB", "BGR", "RGBA", "BGRA"):
            # (a camera's HDR PQ HEIF: brought to SDR as HDR video is; read as SDR it was dull and dark, a review)
            deep = pi_heif.open_heif(io.BytesIO(data), convert_hdr_to_8bit=False, bgr_mode=False)
            rgb48 = np.array(deep)[:, :, :3]
            if rgb48.dtype != np.uint16:  # (an 8-bit picture tagged HDR: its values to 16 bits)
                rgb48 = rgb48.astype(np.uint16) * 257
            return np.ascontiguousarray(sdr_rgb24_of_rgb48(rgb48, transfer, primaries)[:, :, ::-1])
        # (copied while ``heif`` lives: an array viewing its pixels read freed memory once it was gone)
        pixels = np.array(heif)
    except InputError:
        raise
    except Exception as exc:  # (libheif's errors for a damaged file: ValueError, EOFError, SyntaxError, RuntimeError)
        log.debug("pi-heif cannot decode %s: %s", p, exc)
        why = " ".join(str(exc).split())
        if "nsupported" in why:  # (libheif's "Unsupported feature: ...": a kind its decoders do not take)
            raise InputError(f"{p}: an HEIC picture libheif cannot decode ({why}); convert it to JPEG or PNG") from None
        raise InputError(f"{p}: HEIC file is truncated or corrupt; re-download or re-export it") from None
    return pixels


def _turned_by_decoder(data: bytes, decoded: np.ndarray, turn: int) -> bool:
    """Whether OpenCV's decoder already turned the picture upright by its orientation tag ``turn``
    (2..8). Its TIFF decoder does (OpenCV 4.11, even with ``IMREAD_IGNORE_ORIENTATION``; Pillow's
    does too: a TIFF was turned twice, upside down for tag 3); with ``IMREAD_UNCHANGED`` JPEG, PNG
    and WebP come as stored. Where the tag swaps the sides of a TIFF that is not square, the
    decoded size tells (an OpenCV that leaves it as stored is then turned here)."""
    if not data.startswith(_TIFF_SIGNATURES):
        return False
    if turn >= 5:
        size = _header_size(io.BytesIO(data))  # (H, W) of the upright picture
        if size is not None and size[0] != size[1]:
            return decoded.shape[:2] == size
    return True


class _OpenCVQuiet:
    """OpenCV's own log lines off while any thread decodes (``[ WARN:0@11.6] global
    grfmt_tiff.cpp:833 readData ...`` went to stderr beside wbcap's one line for a cut TIFF: a
    batch trial), its level as it was once the last one is done. OpenCV's level is the process's:
    one instance (:data:`_quiet_opencv`) counts the decoders under a lock (each thread saving and
    restoring it left it silent for good after a thread pool's decodes: a break-it review)."""

    def __init__(self) -> None:
        import threading

        self._lock = threading.Lock()
        self._users = 0
        self._level: int | None = None

    @staticmethod
    def _functions(cv2) -> tuple[Callable[[], int], Callable[[int], None]] | None:
        logging_api = getattr(getattr(cv2, "utils", None), "logging", None)  # (4.12+; cv2 itself before)
        get = getattr(logging_api, "getLogLevel", None) or getattr(cv2, "getLogLevel", None)
        put = getattr(logging_api, "setLogLevel", None) or getattr(cv2, "setLogLevel", None)
        return None if get is None or put is None else (get, put)

    @contextlib.contextmanager
    def __call__(self, cv2):
        functions = self._functions(cv2)
        if functions is None:  # (a build without either: its lines as they come)
            yield
            return
        get, put = functions
        with self._lock:
            if self._users == 0:
                self._level = get()
                put(0)  # (LOG_LEVEL_SILENT)
            self._users += 1
        try:
            yield
        finally:
            with self._lock:
                self._users -= 1
                if self._users == 0 and self._level is not None:
                    put(self._level)


#: The one holder of OpenCV's log level while pictures decode (:class:`_OpenCVQuiet`).
_quiet_opencv = _OpenCVQuiet()


#: The sizes a BMP's info header may have (BITMAPCOREHEADER ... BITMAPV5HEADER): with the ``BM``
#: signature, a BMP's own (a text file beginning "BM" is not said a damaged BMP).
_BMP_HEADER_SIZES = frozenset({12, 16, 40, 52, 56, 64, 108, 124})


def _decodable_kind(data: bytes) -> str | None:
    """The name of a format OpenCV decodes whose signature ``data`` starts with (TIFF, WebP,
    BMP): such a file that did not decode is damaged, not of another kind. None for others."""
    if data.startswith(_TIFF_SIGNATURES):
        return "TIFF"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    if data[:2] == b"BM" and len(data) >= 18 and int.from_bytes(data[14:18], "little") in _BMP_HEADER_SIZES:
        return "BMP"
    return None


def _damage(p: Path, damaged: str, check: Callable[[Path, bytes], None], data: bytes) -> str | None:
    """``check(p, data)``'s InputError raised (``damaged="refuse"``) or returned as its message
    (``"warn"``); None when the check passes."""
    try:
        check(p, data)
    except InputError as exc:
        if damaged != "warn":
            raise
        return str(exc)
    return None


def check_pixel_count(path: str | os.PathLike[str], width: int, height: int) -> None:
    """Refuse a ``width`` x ``height`` picture of more than :data:`MAX_IMAGE_PIXELS` pixels.

    Raises:
        InputError: naming ``path``, its size, the limit and the fix.
    """
    if width * height > MAX_IMAGE_PIXELS:
        raise InputError(f"{path}: the image is {width}x{height} pixels ({width * height / 1e6:,.0f} megapixels), "
                         f"more than wbcap's limit of {MAX_IMAGE_PIXELS:,} ({MAX_IMAGE_PIXELS / 1e6:.0f} megapixels, "
                         "e.g. 16384x16384); scale it down first")


@contextlib.contextmanager
def _open_pillow(source):
    """``PIL.Image.open(source)`` (lazy: headers only) without Pillow's decompression-bomb check,
    whose limit (a warning printed above 89 megapixels, an error above 179) is below
    :data:`MAX_IMAGE_PIXELS`, which wbcap applies itself (:func:`check_pixel_count`). The check is
    off only while the headers are parsed, under a lock. A path that is no regular file (a named
    pipe would be waited on for ever) raises ``OSError``."""
    from PIL import Image

    if isinstance(source, Path) and source.exists() and not source.is_file():
        raise OSError(f"{source}: not a regular file")
    with _PILLOW_LOCK:
        saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            im = Image.open(source)
        finally:
            Image.MAX_IMAGE_PIXELS = saved
    with im:
        yield im


def _animated(data: bytes) -> bool:
    """Whether an image file's bytes hold an animation :func:`load_image` decodes only the first
    frame of: an APNG (an ``acTL`` chunk before the first ``IDAT``; PNG spec, APNG extension), an
    animated WebP (an ``ANIM`` chunk in its ``VP8X`` container; WebP container spec), a TIFF
    of several pages, an AVIF of several frames, an HEIC of several pictures or a GIF of several
    frames."""
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        idat = data.find(b"IDAT")
        return b"acTL" in data[: idat if idat > 0 else len(data)]
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP" and data[12:16] == b"VP8X":
        return b"ANIM" in data[12:64]
    if data.startswith(_GIF_SIGNATURES):
        return _gif_has_second_frame(io.BytesIO(data))
    if data.startswith(_TIFF_SIGNATURES) or is_avif(data[:SNIFF_BYTES]):  # (Pillow walks the directories / frames)
        try:
            with _open_pillow(io.BytesIO(data)) as im:
                return int(getattr(im, "n_frames", 1)) > 1
        except Exception:
            return False
    if is_heic(data[:SNIFF_BYTES]):
        try:
            import pi_heif

            return len(pi_heif.open_heif(io.BytesIO(data))) > 1
        except Exception:
            return False
    return False


def _stored_size(im) -> tuple[int, int]:
    """``(width, height)`` of the picture as stored in an opened Pillow image (before its
    orientation tag): Pillow's size, except for a TIFF, whose size Pillow (13) gives upright, as
    its decoder turns it; the stored one is in its tags."""
    width, height = im.size
    if im.format == "TIFF":
        tags = getattr(im, "tag_v2", {})
        width, height = tags.get(256, width), tags.get(257, height)  # (ImageWidth, ImageLength)
    return int(width), int(height)


def _heic_size(source: Path | io.BytesIO) -> tuple[int, int]:
    """``(H, W)`` of an HEIC's primary picture as :func:`load_image` decodes it (upright: libheif
    applies its turn), from its headers (pi-heif decodes no pixels for it; Pillow reads no HEIC,
    so a folder of phone photos was decoded whole twice: a break-it trial).

    Raises:
        ImportError: no pi-heif; pi-heif's errors for a file that is no HEIC it reads.
    """
    import pi_heif

    width, height = pi_heif.open_heif(source).size
    return int(height), int(width)


def _head(source: Path | io.BytesIO) -> bytes:
    """The first :data:`SNIFF_BYTES` bytes of a regular file or of bytes in memory; none for
    anything else (a named pipe would be waited on for ever)."""
    if isinstance(source, io.BytesIO):
        return source.getvalue()[:SNIFF_BYTES]
    if not source.is_file():
        return b""
    with open(source, "rb") as f:
        return f.read(SNIFF_BYTES)


def image_size(path: str | os.PathLike[str]) -> tuple[int, int] | None:
    """``(H, W)`` pixels of the upright picture :func:`load_image` would return, from the file's
    headers only (Pillow; an HEIC's through pi-heif, upright; no decoding), or None when they
    cannot tell (the file is then checked by :func:`load_image` when it is read). A picture of
    more than :data:`MAX_IMAGE_PIXELS` (which :func:`load_image` refuses) gets its size as stored
    (an HEIC's upright)."""
    try:
        screen = _gif_screen(Path(path))
        if screen is not None:
            return screen
        if is_heic(_head(Path(path))):
            return _heic_size(Path(path))
        with _open_pillow(Path(path)) as im:  # lazy: parses headers only
            width, height = _stored_size(im)
            if width * height > MAX_IMAGE_PIXELS:  # (a PNG's orientation could mean decoding it)
                return (int(height), int(width))
            orientation = _orientation_tag(im)
    except Exception:
        return None
    return (int(width), int(height)) if orientation in (5, 6, 7, 8) else (int(height), int(width))


def check_image_files(paths: Iterable[str | os.PathLike[str]], size: tuple[int, int]) -> None:
    """Check, before a run reads them, that the image files of a sequence are what
    :func:`load_image` will accept, all ``size`` ``(H, W)`` (the sequence's first image),
    cheaply: each file's size from its headers (:func:`_header_size`) and, for JPEG and PNG, that
    it ends with its end marker. A file whose headers give no size or another size, or whose end
    marker is missing, is read whole by :func:`load_image`, which settles it (a format Pillow
    does not read, an orientation tag after a PNG's pixels, bytes after the end, or its one-line
    error). A file damaged inside intact headers and end marker is only found when the run reads it.

    Raises:
        InputError: a file :func:`load_image` refuses (its message), or one of another size
            (naming it, both sizes and the fix).
    """
    height, width = size
    for path in paths:
        p = Path(path)
        check_regular_file(p)  # (before opening it: a pipe's open waited forever)
        found = _header_size(p) if _ends_whole(p) else None
        if found != (height, width):  # (or no answer): the whole file settles it
            found = load_image(p).shape[:2]
        if tuple(found) != (height, width):
            raise InputError(f"{p}: image is {found[1]}x{found[0]}, the sequence's first image is {width}x{height}; "
                             "resize the images to one size")


def _header_size(p: Path | io.BytesIO) -> tuple[int, int] | None:
    """``(H, W)`` of the upright picture from the file's (or the bytes') first bytes only
    (Pillow's headers; a PNG's EXIF orientation only when its ``eXIf`` chunk comes before the
    pixels, as :func:`image_size` would decode the whole PNG to find one after them), or None."""
    try:
        screen = _gif_screen(p)
        if screen is not None:
            return screen
        if is_heic(_head(p)):
            return _heic_size(p)
        with _open_pillow(p) as im:
            width, height = _stored_size(im)
            orientation = _orientation_tag(im) if im.format != "PNG" or "exif" in im.info else None
    except Exception:
        return None
    return (int(width), int(height)) if orientation in (5, 6, 7, 8) else (int(height), int(width))


def _gif_screen(p: Path | io.BytesIO) -> tuple[int, int] | None:
    """``(H, W)`` of a GIF's logical screen (its header's; GIF89a spec, section 18), what FFmpeg
    decodes its frames to (:func:`_decode_gif`); None for another file. (Pillow's size also takes
    in the first frame's descriptor: a corrupt one was refused as 28455 x 40017 pixels, a
    break-it trial.)"""
    head = _head(p)
    if len(head) < 10 or not head.startswith(_GIF_SIGNATURES):
        return None
    width, height = int.from_bytes(head[6:8], "little"), int.from_bytes(head[8:10], "little")
    return height, width


def _ends_whole(p: Path) -> bool:
    """Whether the file ``p`` is no JPEG, PNG or HEIF, or one that ends with its end marker (the
    fast path of :func:`_check_complete`), from its first and last bytes, or (HEIF: AVIF, HEIC)
    whose top-level boxes end where the file does (:func:`_boxes_fill`: a photo cut short keeps
    its headers, which gave its size; a break-it trial's passed the sequence's check); False when
    it cannot be read."""
    try:
        with open(p, "rb") as f:
            head = f.read(SNIFF_BYTES)
            if _ftyp_brands(head) is not None:
                return _boxes_fill(f)
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64))
            tail = f.read().rstrip(b"\x00")
    except OSError:
        return False
    if head.startswith(_JPEG_SOI):
        return tail.endswith(_JPEG_EOI)
    if head.startswith(_PNG_SIGNATURE):
        return tail.endswith(_PNG_IEND)
    return bool(head)


def _boxes_fill(f) -> bool:
    """Whether an ISO-BMFF file's (open, binary) top-level boxes follow one another to its end
    exactly (ISO/IEC 14496-12, 4.2: a 32-bit size, a 64-bit one where it is 1, to the end where
    it is 0), from their headers only."""
    f.seek(0, os.SEEK_END)
    size, at = f.tell(), 0
    while at < size:
        f.seek(at)
        box = _box_header(f.read(16), size - at)
        if box is None:
            return False
        at += box[0]
    return at == size


def _box_header(header: bytes, room: int) -> tuple[int, int] | None:
    """``(box size, header size)`` of the ISO-BMFF box whose first bytes are ``header`` (at least
    16 where there are), ``room`` bytes before the end of what holds it (ISO/IEC 14496-12, 4.2:
    a 32-bit size; a 64-bit one after the type where that is 1; to the end where it is 0); None
    for a header cut short or a size under its header's."""
    if len(header) < 8:
        return None
    size, length = int.from_bytes(header[:4], "big"), 8
    if size == 1:
        if len(header) < 16:
            return None
        size, length = int.from_bytes(header[8:16], "big"), 16
    elif size == 0:
        size = room
    return (size, length) if size >= length else None


def apply_exif_orientation(image: np.ndarray, orientation: int) -> np.ndarray:
    """Turn an image as stored into the upright picture its EXIF orientation tag describes.

    Same transforms as Pillow's ``ImageOps.exif_transpose``: 2 mirror left-right, 3 rotate 180,
    4 mirror top-bottom, 5 transpose, 6 rotate 90 degrees clockwise, 7 transverse, 8 rotate 90
    degrees counter-clockwise; 1 and unknown values leave the image as is.

    Args:
        image: ``(H, W, ...)`` array (any dtype, any channels) as stored in the file.
        orientation: the EXIF ``Orientation`` tag value (1..8).

    Returns:
        A view of ``image``, ``(H, W, ...)`` for 1-4 and ``(W, H, ...)`` for 5-8.
    """
    swap = (1, 0) + tuple(range(2, image.ndim))
    if orientation == 2:
        return image[:, ::-1]
    if orientation == 3:
        return image[::-1, ::-1]
    if orientation == 4:
        return image[::-1]
    if orientation == 5:
        return image.transpose(swap)
    if orientation == 6:
        return np.rot90(image, k=-1)
    if orientation == 7:
        return image.transpose(swap)[::-1, ::-1]
    if orientation == 8:
        return np.rot90(image, k=1)
    return image


def iter_image_paths(
    paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    warn: bool = True,
) -> list[Path]:
    """Expand files, folders and glob patterns into a list of image files.

    * A file is kept as given, whatever its extension (:func:`load_image` judges it).
    * A folder contributes its image files (:data:`IMAGE_EXTENSIONS`, case-insensitive; not
      recursive; hidden ``.name`` files skipped) in natural order (``f2.jpg`` before ``f10.jpg``);
      pictures of kinds wbcap does not read (:data:`UNREAD_PICTURE_EXTENSIONS`: HEIC, raw
      files...) are skipped with one warning naming them, and so are videos. A GIF is a picture there (its first
      frame, :func:`load_image`); named alone to `wbcap run`, a video.
    * A pattern with ``*``, ``?`` or ``[`` (when no file has that literal name) contributes the
      matching image files, ``**`` recursive, in natural order.

    Duplicates are dropped, keeping the first occurrence; otherwise the order of ``paths`` is kept.
    A folder's or a pattern's entries with an image's name are listed whatever they are but folders
    (a link to nothing, a pipe): each is a picture's place, which reading it then refuses.

    Args:
        paths: one path/pattern or an iterable of them.
        warn: say which pictures a folder's listing skipped (False: a second listing of the same
            input, already said).

    Returns:
        Image file paths (as given, not resolved).

    Raises:
        InputError: a path that does not exist, a pattern or folder that yields no image.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    out: list[Path] = []
    seen: set[Path] = set()

    def add(found: Iterable[Path]) -> None:
        for f in found:
            key = f.absolute()
            if key not in seen:
                seen.add(key)
                out.append(f)

    for item in paths:
        p = Path(item).expanduser()
        kind = path_kind(item)
        if kind == "folder":
            entries = sorted(p.iterdir(), key=_natural_key)
            # (not by is_file: a broken link in place of a frame was left out without a word, and
            # every later frame of the sequence took the time of the one before; a break-it
            # trial. Every image name but a folder's is read, and one that cannot be is refused.)
            files = [f for f in entries if _is_image_name(f) and not f.is_dir()]
            _warn_unread_pictures(p, [] if not warn else [f for f in entries if f.suffix.lower() in UNREAD_PICTURE_EXTENSIONS
                                      and not f.name.startswith(".") and f.is_file()])
            videos = [f for f in entries if not f.name.startswith(".") and f.is_file() and f.suffix.lower() in _VIDEO_NAMES]
            if not files:
                if videos:  # (a folder of phone clips: said only for a glob of them before; a user trial)
                    raise InputError(_no_image_match(p, videos, "folder holds", "video"))
                raise InputError(
                    f"{p}: folder holds no image files ({', '.join(sorted(IMAGE_EXTENSIONS))}); "
                    f"{_nested_images(p, entries) or 'point to a folder of images'}"
                )
            if warn:
                _warn_skipped_videos(p, videos)
                _warn_hidden_pictures(p, entries)
                nested = _nested_images(p, entries, skipped=True)
                if nested:  # (left out without a word beside the pictures: a photo user's trial)
                    log.warning("%s: %s", p, nested)
            add(files)
        elif kind == "file":
            add([p])
        elif kind == "pattern":
            matches = sorted(
                (Path(m) for m in glob.glob(str(p), recursive=True)),
                key=_natural_key,
            )
            files = [m for m in matches if not m.is_dir() and _is_image_name(m)]  # (as a folder's)
            if not files:
                raise InputError(_no_image_match(item, [m for m in matches if m.is_file()]))
            if warn:  # (as a folder's: a break-it trial)
                _warn_skipped_videos(item, [m for m in matches if m.is_file() and m.suffix.lower() in _VIDEO_NAMES])
            add(files)
        else:
            raise InputError(missing_path_message(p))
    return out


def _warn_skipped_videos(where: object, videos: list[Path]) -> None:
    """One warning for the videos a folder or pattern input of pictures leaves out (they were
    left out without a word beside the pictures: a new user's trial)."""
    if videos:
        more = f" and {len(videos) - 3} more" if len(videos) > 3 else ""
        log.warning("%s: skipped %s%s: videos are not read in a folder of pictures (`wbcap run VIDEO` reads one)",
                    where, ", ".join(f.name for f in videos[:3]), more)


def _warn_hidden_pictures(folder: Path, entries: list[Path]) -> None:
    """One warning for the hidden pictures (names starting with ``.``) a folder input leaves out
    (left out without a word: a batch trial); macOS's ``._*`` files beside copied pictures, which
    hold no picture, are left out silently."""
    hidden = [f for f in entries if f.name.startswith(".") and not f.name.startswith("._")  # (`.jpg` too: a review)
              and (f.suffix or f.name).lower().rstrip() in IMAGE_EXTENSIONS and f.is_file()]
    if hidden:
        more = f" and {len(hidden) - 3} more" if len(hidden) > 3 else ""
        log.warning("%s: skipped the hidden picture%s %s%s (names starting with '.'; name one to read it)", folder,
                    "s" if len(hidden) > 1 else "", ", ".join(f.name for f in hidden[:3]), more)


def _warn_unread_pictures(folder: Path, skipped: list[Path]) -> None:
    """One warning for the pictures in ``folder`` that wbcap does not read (by their names:
    :data:`UNREAD_PICTURE_EXTENSIONS`), which a folder input skips: say so rather than leave a
    user wondering where they went."""
    if skipped:
        more = f" and {len(skipped) - 3} more" if len(skipped) > 3 else ""
        log.warning("%s: skipped %s%s: pictures of a kind wbcap does not read (it reads %s); convert them to JPEG "
                    "or PNG", folder, ", ".join(f.name for f in skipped[:3]), more,
                    " ".join(sorted(IMAGE_EXTENSIONS)))


def _no_image_match(pattern: object, others: list[Path], verb: str = "pattern matches", kind: str = "other") -> str:
    """The message for a pattern (or, with ``verb`` "folder holds", a folder) that yields no
    image file; ``others``: the other files it yields, called ``kind`` files. Where some are
    videos, a glob or a folder is read as an image sequence, never as several videos: give one
    by its path; else, the image kinds wbcap reads (a glob of a JFIF and a HEIC photo was told
    to give a video: a photo user's trial)."""
    what = verb.split()[0]
    if not others:
        return f"{pattern}: {verb} no image file; check the {what}"
    names = ", ".join(f.name for f in others[:3]) + (", ..." if len(others) > 3 else "")
    count = f"{len(others)} {kind} file" + ("s" if len(others) > 1 else "")
    if not any(f.suffix.lower() in _VIDEO_NAMES for f in others):
        unread = sorted({f.suffix.lower() for f in others} & UNREAD_PICTURE_EXTENSIONS)
        convert = f"; convert the {', '.join(unread)} pictures to JPEG or PNG" if unread else ""
        return (f"{pattern}: {verb} no image file but {count} ({names}): images are read from "
                f"{', '.join(sorted(IMAGE_EXTENSIONS))} files{convert}")
    return (f"{pattern}: {verb} no image file but {count} ({names}); a "
            f"{what} is read as an image sequence: give a video by its own path, not a {what} "
            "(`wbcap run VIDEO`, one run per video)")


def _nested_images(folder: Path, entries: list[Path], skipped: bool = False) -> str:
    """What to say where a folder's subfolders hold images (a folder input is read without its
    subfolders: a photo user's `Day1/` was left out without a word), else ""; looks at every depth
    (a batch trial's `a/b/deep.jpg` was left out without a word) of at most 50 subfolders, reading
    at most 2000 entries of each. ``skipped``: the folder's own images are read, and the line
    says that these were not (a warning), else what to do for a folder without images."""
    holding = [sub.name for sub in itertools.islice((e for e in entries if not e.name.startswith(".") and e.is_dir()), 50)
               if _holds_images(sub, 2000)]
    if not holding:
        return ""
    shown = ", ".join(holding[:3]) + (", ..." if len(holding) > 3 else "")
    # (the pattern as one shell word: pasted back as typed, a break-it trial)
    pattern = shell_word(str(Path(glob.escape(str(folder))) / "**"))
    if skipped:
        return (f"skipped the images in its subfolder{'s' if len(holding) > 1 else ''} {shown} (a folder is read "
                f"without its subfolders; {pattern} reads them all)")
    return (f"a folder is read without its subfolders, and {shown} hold{'s' if len(holding) == 1 else ''} some: "
            f"name {'it' if len(holding) == 1 else 'one'}, or all with a pattern such as {pattern}")


#: Names of video files a folder of footage holds (phones, cameras, screen recorders): a folder
#: of them, given as the input, is told to pass one video (:func:`iter_image_paths`).
_VIDEO_NAMES = frozenset({".mp4", ".mov", ".m4v", ".avi", ".mkv", ".webm", ".mts", ".m2ts", ".ts", ".3gp", ".mpg",
                          ".mpeg", ".wmv", ".flv", ".ogv"})


def is_moving_picture_name(path: str | os.PathLike[str]) -> bool:
    """Whether ``path``'s name is a video's (what `wbcap run` reads frame by frame)."""
    return Path(path).suffix.lower() in _VIDEO_NAMES


def is_animated_gif(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a GIF of more than one frame (by its bytes, whatever its name; False
    when it cannot be read: reading it says why)."""
    p = Path(path).expanduser()
    if not p.is_file():  # (a named pipe would be waited on for ever: a review)
        return False
    try:
        with open(p, "rb") as f:
            if not f.read(6).startswith(_GIF_SIGNATURES):
                return False
    except OSError:
        return False
    return _gif_has_second_frame(p)


def _gif_has_second_frame(source: Path | io.BytesIO) -> bool:
    """Whether a GIF (a file or its bytes) has a second frame: where one begins (Pillow's
    ``seek(1)``), not a count of all its frames (which read them all, and a cut GIF's failed: a
    break-it trial). False for one frame or damage before a second."""
    try:
        with _open_pillow(source) as im:
            im.seek(1)
            return True
    except Exception:  # (EOFError: one frame; others: damaged before a second)
        return False


#: ``ftyp`` brands (major or compatible) of ISO-BMFF files that hold pictures, not video: HEIF /
#: HEIC and their image sequences, AVIF, MIAF, JPEG in HEIF, Canon's CR3 raw, JPEG 2000's JPX/JPM.
_PICTURE_BRANDS = frozenset({b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs", b"mif1",
                             b"mif2", b"msf1", b"miaf", b"heif", b"avif", b"avis", b"avci", b"avcs", b"jpeg",
                             b"jpgs", b"MiHE", b"MiHA", b"MiHB", b"MiAn", b"crx ", b"jp2 ", b"jpx ", b"jpm "})
#: ISO-BMFF boxes that may come first in an MP4 or MOV other than ``ftyp`` (older QuickTime files).
_FIRST_BOXES = frozenset({b"moov", b"mdat", b"free", b"skip", b"wide"})
#: ASF's (WMV's) header object GUID, its first 16 bytes.
_ASF_GUID = bytes.fromhex("3026b2758e66cf11a6d900aa0062ce6c")
#: What a file named as a video should be renamed to, by :func:`video_container`'s names.
VIDEO_SUFFIX = {"MP4/MOV": ".mp4", "Matroska/WebM": ".mkv", "AVI": ".avi", "MPEG-TS": ".ts", "FLV": ".flv",
                "Ogg": ".ogv", "ASF/WMV": ".wmv"}
#: How many of a file's first bytes :func:`video_container` looks at.
SNIFF_BYTES = 512


def _picture_signature(head: bytes) -> bool:
    """Whether ``head`` begins as a picture format does: JPEG, PNG, GIF, BMP, TIFF, WebP, PNM
    (``P1``-``P7`` and a space or comment), JPEG 2000 (its signature box or codestream)."""
    return (head.startswith((b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"BM", b"\xff\x4f\xff\x51",
                             b"\x00\x00\x00\x0cjP  \r\n\x87\n", *_TIFF_SIGNATURES))
            or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")
            or (len(head) > 2 and head[0:1] == b"P" and head[1:2] in b"1234567" and head[2:3] in b" \t\r\n#"))


def video_container(head: bytes, size: int | None = None) -> str | None:
    """The video container a file's first bytes (``head``, :data:`SNIFF_BYTES` of them; ``size``:
    the whole file's bytes, when known) begin, by the containers' signatures, or None (a
    picture's signature first: none of these). MP4/MOV: an ISO-BMFF ``ftyp`` box of a plausible
    size whose brands are no picture's (:data:`_PICTURE_BRANDS`: HEIF, AVIF, ...), or another
    first box (``moov``, ``mdat``, ``free``, ``skip``, ``wide``) of 8 bytes or more that fits the
    file (a text beginning "Get free stuff" is none); Matroska/WebM (EBML's ``1A 45 DF A3``);
    AVI (``RIFF`` .. ``AVI ``); MPEG-TS (sync byte ``G`` at three 188-byte packets, or at three
    192-byte M2TS / AVCHD ones after their time codes); FLV; Ogg; ASF/WMV. Not an MPEG program
    stream, which FFmpeg does not read under a picture's name. A file named as a picture that
    holds one is a video (a clip saved as ``.jpg``: `wbcap run` told it to pass a JPEG, an
    odd-media trial)."""
    if _picture_signature(head):
        return None
    box_size, box = int.from_bytes(head[:4], "big"), head[4:8]
    brands = _ftyp_brands(head)
    if brands is not None:
        return None if {brands[0], *brands[1]} & _PICTURE_BRANDS else "MP4/MOV"
    if box in _FIRST_BOXES and (8 <= box_size <= (size if size is not None else len(head)) or box_size in (0, 1)):
        return "MP4/MOV"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "Matroska/WebM"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "AVI"
    if any(len(head) > 2 * step + skip and head[skip] == head[skip + step] == head[skip + 2 * step] == 0x47
           for step, skip in ((188, 0), (192, 4))):
        return "MPEG-TS"
    if head[:3] == b"FLV":
        return "FLV"
    if head[:4] == b"OggS":
        return "Ogg"
    if head[:16] == _ASF_GUID:
        return "ASF/WMV"
    return None


def file_video_container(path: Path) -> str | None:
    """:func:`video_container` of a regular file's first bytes; None for one that cannot be read."""
    try:
        with open(path, "rb") as f:
            return video_container(f.read(SNIFF_BYTES), os.fstat(f.fileno()).st_size)
    except OSError:
        return None


def _holds_images(folder: Path, budget: int) -> bool:
    """Whether ``folder`` or a folder below it (hidden ones left out) holds an image file, reading
    at most ``budget`` entries in all (a folder that cannot be read counts as holding none)."""
    pending = [folder]
    while pending and budget > 0:
        try:
            with os.scandir(pending.pop()) as listing:
                for entry in itertools.islice(listing, budget):
                    budget -= 1
                    if entry.name.startswith("."):
                        continue
                    if entry.is_dir():
                        pending.append(Path(entry.path))
                    elif _is_image_name(Path(entry.path)) and entry.is_file():
                        return True
        except OSError:
            continue
    return False


def _is_image_name(path: Path) -> bool:
    """Whether a folder's or glob's file ``path`` is taken as a picture: not hidden, and its
    ending one of :data:`IMAGE_EXTENSIONS` in any case, also with spaces after it (``"a.jpg "``
    was left out of a folder without a word: a paths trial; named alone it was read)."""
    return not path.name.startswith(".") and path.suffix.lower().rstrip() in IMAGE_EXTENSIONS


def _natural_key(path: Path) -> tuple[object, ...]:
    """Sort key that orders digit runs by value: ``frame2`` < ``frame10``."""
    parts = re.split(r"(\d+)", str(path))
    return tuple((0, int(s), s) if s.isdigit() else (1, 0, s.lower()) for s in parts)


def check_regular_file(p: Path) -> None:
    """Raise InputError, one line naming ``p``, unless it is a regular file (or a link to one): a
    folder, a link to nothing (:func:`missing_path_message`), a named pipe or a device (reading one
    waited forever: a user trial; checking a sequence's frames too, a break-it trial)."""
    if p.is_file():
        return
    if p.is_dir():
        raise InputError(f"{p}: is a folder, not an image; pass an image file")
    if not p.exists():
        raise InputError(missing_path_message(p, "file"))
    raise InputError(f"{p}: is not a regular file (a pipe or a device); save the image to a file and pass that")


def _read_bytes(p: Path) -> bytes:
    check_regular_file(p)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise InputError(missing_path_message(p, "file")) from None
    except OSError as exc:
        raise InputError(f"{p}: cannot be read ({exc.strerror}); check its permissions") from None
    if not data:
        raise InputError(f"{p}: file is empty (0 bytes); re-export or re-copy the image")
    return data


def _check_complete(p: Path, data: bytes) -> None:
    """Raise InputError when a JPEG, PNG or GIF stream is cut short.

    Fast path: the stream ends with its end marker (JPEG ``EOI``, PNG ``IEND`` chunk, GIF
    trailer), optionally
    followed by zero padding. Anything else (trailing bytes a camera appended, or a real
    truncation) is settled by a full Pillow decode, which raises on a truncated stream.
    """
    if data.startswith(_JPEG_SOI):
        if data.rstrip(b"\x00").endswith(_JPEG_EOI):
            return
    elif data.startswith(_PNG_SIGNATURE):
        if data.rstrip(b"\x00").endswith(_PNG_IEND):
            return
    elif data.startswith(_GIF_SIGNATURES):  # (FFmpeg decodes a cut GIF's first frame in part, without a word)
        if data.rstrip(b"\x00").endswith(GIF_TRAILER):
            return
    else:
        return
    from PIL import ImageFile

    if ImageFile.LOAD_TRUNCATED_IMAGES:  # a global another library may have set
        log.debug("PIL.ImageFile.LOAD_TRUNCATED_IMAGES is set; truncation check may be weaker")
    try:
        with _open_pillow(io.BytesIO(data)) as im:  # (load_image checked its pixel count)
            im.load()
    except Exception as exc:  # Pillow raises OSError, SyntaxError, ValueError... on bad streams
        log.debug("Pillow rejects %s: %s", p, exc)
        raise InputError(
            f"{p}: image file is truncated or corrupt; re-download or re-export it"
        ) from None


#: libjpeg-turbo's messages (``jerror.h``) after which part of the picture is decoded grey: the
#: warnings JWRN_HIT_MARKER, JWRN_HUFF_BAD_CODE, JWRN_JPEG_EOF, and JERR_UNKNOWN_MARKER, a marker no
#: JPEG defines met inside the scan (a stray byte pair 0xFF 0x01-0xBF: the strict decode stops there).
_LOST_PIXELS = ("premature end of data segment", "bad huffman code", "premature end of jpeg file",
                "unsupported marker type")


def _check_jpeg_data(p: Path, data: bytes) -> None:
    """Raise InputError when a JPEG's entropy-coded data is damaged, so part of it decodes grey.

    The whole stream is decoded once more by ``simplejpeg`` (libjpeg-turbo) in strict mode, to
    grey levels only (no colour conversion; CMYK/YCCK files as CMYK) at 1/8 scale (every
    coefficient is still entropy-decoded: a fifth of OpenCV's time for a 1080p frame), which
    raises ``ValueError`` with libjpeg's message at the first warning. Other failures (a JPEG flavour simplejpeg does
    not take, such as arithmetic coding or 12 bits; a harmless warning) are logged and passed:
    OpenCV already decoded the picture.
    """
    if not data.startswith(_JPEG_SOI):
        return
    import simplejpeg

    try:
        height, width, colorspace, _ = simplejpeg.decode_jpeg_header(data)
        check_pixel_count(p, width, height)
        simplejpeg.decode_jpeg(data, colorspace="CMYK" if colorspace in ("CMYK", "YCCK") else "GRAY",
                               strict=True, min_height=1, min_width=1)
    except ValueError as exc:
        message = str(exc)
        if not any(m in message.lower() for m in _LOST_PIXELS):
            log.debug("simplejpeg does not check %s: %s", p, message)
            return
        said = message.removeprefix("Corrupt JPEG data: ").rstrip(".")
        raise InputError(f"{p}: image file is truncated or corrupt (libjpeg: {said}; part of it would "
                         f"decode grey); re-download or re-export it") from None


def _check_png_data(p: Path, data: bytes) -> None:
    """Raise InputError when a critical chunk of a PNG (``IHDR``, ``PLTE``, ``IDAT``, ``IEND``)
    fails its CRC-32: libpng stops there, so OpenCV decodes none of it, and prints "libpng error:
    IDAT: CRC error" to stderr beside wbcap's line, which called the file one it cannot decode (a
    batch trial). A chunk is its length (4 bytes, big-endian), type (4), data and the CRC-32 of
    type and data (4) (PNG specification, 5.3); zlib checks them at about 4 GB/s (0.7 ms for a
    3 MB frame on a Zen 4 EPYC core). An ancillary chunk's error is left to libpng (a warning, the
    chunk dropped), and a stream that ends early to :func:`_check_complete`.
    """
    if not data.startswith(_PNG_SIGNATURE):
        return
    import zlib

    view = memoryview(data)
    at = len(_PNG_SIGNATURE)
    while at + 12 <= len(data):
        end = at + 8 + int.from_bytes(data[at:at + 4], "big")
        kind = bytes(view[at + 4:at + 8])
        if end + 4 > len(data):
            return
        if kind[:1].isupper() and zlib.crc32(view[at + 4:end]) != int.from_bytes(data[end:end + 4], "big"):
            raise InputError(f"{p}: image file is truncated or corrupt (its PNG {kind.decode('latin-1')} chunk at byte "
                             f"{at} fails its CRC check); re-download or re-export it")
        if kind == b"IEND":
            return
        at = end + 4


def _to_rgb8(p: Path, img: np.ndarray) -> np.ndarray:
    """OpenCV's decoded array (gray, BGR or BGRA; 8/16-bit) -> (H, W, 3) uint8 RGB."""
    if img.dtype == np.uint16:
        img = ((img.astype(np.uint32) + 128) // 257).astype(np.uint8)  # round(v / 257)
    elif img.dtype != np.uint8:
        raise InputError(
            f"{p}: pixels are {img.dtype}, not 8- or 16-bit integers; convert it to an 8-bit "
            "PNG or JPEG"
        )
    if img.ndim == 2:
        return np.repeat(img[:, :, None], 3, axis=2)
    channels = img.shape[2]
    if channels == 1 or channels == 2:  # gray (+ alpha)
        return np.repeat(img[:, :, :1], 3, axis=2)
    if channels == 3 or channels == 4:  # BGR (+ alpha): drop alpha, reverse to RGB
        import cv2

        # (OpenCV's conversion writes a contiguous array: 5x faster than copying numpy's reversed
        # view, ~1 against ~6 ms for a 1000 x 1000 photo; the same bytes)
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB if channels == 3 else cv2.COLOR_BGRA2RGB)
    raise InputError(f"{p}: has {channels} channels; convert it to an RGB image")


#: An EXIF orientation tag as the turn that makes the stored picture upright, in the convention
#: of :class:`wbcap.io.video_probe.VideoInfo` and ``meta.json``'s ``display``: ``(rotation,
#: mirrored)``, turned ``rotation`` degrees clockwise, then flipped left-right when ``mirrored``
#: (what :func:`apply_exif_orientation` does; the same as
#: :func:`wbcap.io.video_reader.apply_rotation` with these values, as the tests check).
EXIF_DISPLAY: dict[int, tuple[int, bool]] = {1: (0, False), 2: (0, True), 3: (180, False), 4: (180, True),
                                             5: (90, True), 6: (90, False), 7: (270, True), 8: (270, False)}


def image_display(path: str | os.PathLike[str]) -> tuple[int, bool]:
    """How :func:`load_image` turns the picture stored in ``path`` upright, by its EXIF
    orientation (:data:`EXIF_DISPLAY`), an HEIC's by its ``irot`` / ``imir`` (:func:`_heif_turn`;
    its EXIF tag does not apply: an iPhone's portrait photo was said unturned, a user trial):
    ``(rotation, mirrored)``; ``(0, False)`` without a tag, an unknown value, or a file that
    cannot be read (``load_image`` says why)."""
    try:
        data = _read_bytes(Path(path).expanduser())
    except (OSError, InputError):
        return 0, False
    if is_heic(data[:SNIFF_BYTES]):
        return _heif_turn(data)
    return EXIF_DISPLAY.get(_exif_orientation(data) or 1, (0, False))


def _heif_turn(data: bytes) -> tuple[int, bool]:
    """``(rotation, mirrored)`` as :data:`EXIF_DISPLAY` says a turn (clockwise degrees, then a
    left-right mirror) of the ``irot`` (``angle`` x 90 degrees anticlockwise) and ``imir``
    (``axis`` 1: left-right, 0: top-bottom, as libheif reads it) properties a HEIF associates with
    its primary picture (``pitm``; ``ipma``'s entry for it, in its order, as libheif applies
    them; ISO/IEC 23008-12, 6.5.10-12, 9.3: a thumbnail's own turn is not the picture's);
    ``(0, False)`` for none, or where its ``meta`` box cannot be read."""
    boxes = _children(data, 0, len(data))
    meta = boxes.get(b"meta")
    if meta is None:
        return 0, False
    inside = _children(data, meta[0] + 4, meta[1])  # (a full box: version and flags first)
    pitm, iprp = inside.get(b"pitm"), inside.get(b"iprp")
    if pitm is None or iprp is None:
        return 0, False
    wide = data[pitm[0]] >= 1
    primary = int.from_bytes(data[pitm[0] + 4:pitm[0] + (8 if wide else 6)], "big")
    props = _children(data, iprp[0], iprp[1], all_of=True)
    ipco = next((span for kind, span in props if kind == b"ipco"), None)
    ipma = next((span for kind, span in props if kind == b"ipma"), None)
    if ipco is None or ipma is None:
        return 0, False
    properties = _children(data, ipco[0], ipco[1], all_of=True)
    rotation, mirrored = 0, False
    for index in _associations(data, ipma, primary):
        if not 1 <= index <= len(properties):
            continue
        kind, (at, _) = properties[index - 1]
        if kind == b"irot":  # (a rotation after a mirror turns the other way: R_ccw M = M R_cw)
            quarter = (data[at] & 3) * 90
            rotation = (rotation + quarter if mirrored else rotation - quarter) % 360
        elif kind == b"imir":  # (top-bottom: a half turn and a left-right mirror)
            rotation = rotation if data[at] & 1 else (rotation + 180) % 360
            mirrored = not mirrored
    return rotation, mirrored


def _children(data: bytes, start: int, end: int, all_of: bool = False):
    """The ISO-BMFF boxes from ``start`` to ``end`` of ``data``: ``{type: (payload start, box
    end)}`` (the first of each type), or with ``all_of`` ``[(type, (payload start, box end))]`` in
    order; a box that runs past ``end`` or has no valid size ends the list (:func:`_box_header`)."""
    found: list = []
    at = start
    while at + 8 <= end:
        box = _box_header(data[at:at + 16], end - at)
        if box is None or at + box[0] > end:
            break
        found.append((data[at + 4:at + 8], (at + box[1], at + box[0])))
        at += box[0]
    return found if all_of else {kind: span for kind, span in reversed(found)}


def _associations(data: bytes, ipma: tuple[int, int], item: int) -> list[int]:
    """The property indices (1-based into ``ipco``) an ``ipma`` box associates with ``item``, in
    its order (ISO/IEC 23008-12, 9.3.2: version 1 item IDs of 32 bits; flags bit 0, indices of 15
    bits, else 7; the essential bit dropped)."""
    at, end = ipma
    version, flags = data[at], int.from_bytes(data[at + 1:at + 4], "big")
    at += 4
    count = int.from_bytes(data[at:at + 4], "big")
    at += 4
    id_size, index_size = (4 if version >= 1 else 2), (2 if flags & 1 else 1)
    for _ in range(count):
        if at + id_size + 1 > end:
            break
        item_id = int.from_bytes(data[at:at + id_size], "big")
        n = data[at + id_size]
        at += id_size + 1
        raw = [int.from_bytes(data[at + k * index_size:at + (k + 1) * index_size], "big") for k in range(n)]
        at += n * index_size
        if item_id == item:
            return [v & (0x7FFF if index_size == 2 else 0x7F) for v in raw]
    return []


def _exif_orientation(data: bytes) -> int | None:
    """The EXIF orientation tag of an encoded image, or None (no tag, or Pillow can't parse it)."""
    if data.startswith(_PNG_SIGNATURE) and b"eXIf" not in data:  # (Pillow would decode the PNG to look for one)
        return None
    try:
        with _open_pillow(io.BytesIO(data)) as im:  # lazy: parses headers only
            return _orientation_tag(im)
    except Exception:
        return None


def _orientation_tag(im) -> int | None:
    """The EXIF orientation tag of an opened Pillow image, or None (none, or not a number)."""
    value = im.getexif().get(_EXIF_ORIENTATION_TAG)
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None
