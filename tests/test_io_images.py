"""wbcap.io.images: decoding, pixel normalisation, EXIF orientation, user errors, path expansion."""

from __future__ import annotations

import io
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps

from wbcap.errors import InputError
from wbcap.io.images import apply_exif_orientation, image_size, iter_image_paths, load_image


def _pattern(h: int, w: int) -> np.ndarray:
    """(H, W, 3) uint8 RGB with distinct values everywhere; pixel (0, 0) pure red."""
    rng = np.random.default_rng(h * 1000 + w)
    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    img[0, 0] = (255, 0, 0)
    return img


def test_rgb_png_round_trip_is_pixel_exact(tmp_path: Path) -> None:
    rgb = _pattern(17, 23)
    path = tmp_path / "a.png"
    Image.fromarray(rgb).save(path)  # Pillow writes RGB order
    out = load_image(path)
    assert out.shape == (17, 23, 3) and out.dtype == np.uint8
    assert out.flags.c_contiguous
    np.testing.assert_array_equal(out, rgb)
    assert tuple(out[0, 0]) == (255, 0, 0)  # red stays red: channels are RGB, not BGR


def test_cv2_written_bgr_red_reads_as_rgb_red(tmp_path: Path) -> None:
    bgr = np.zeros((4, 5, 3), np.uint8)
    bgr[1, 2] = (0, 0, 255)  # red in OpenCV's BGR
    path = tmp_path / "red.png"
    assert cv2.imwrite(str(path), bgr)
    out = load_image(path)
    assert tuple(out[1, 2]) == (255, 0, 0)
    assert out.sum() == 255


def test_grayscale_is_replicated(tmp_path: Path) -> None:
    gray = np.arange(30, dtype=np.uint8).reshape(5, 6) * 8
    path = tmp_path / "g.png"
    cv2.imwrite(str(path), gray)
    out = load_image(path)
    assert out.shape == (5, 6, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[:, :, c], gray)


def test_rgba_drops_alpha_keeping_stored_colour(tmp_path: Path) -> None:
    rgba = np.zeros((6, 7, 4), np.uint8)
    rgba[..., :3] = _pattern(6, 7)
    rgba[..., 3] = np.linspace(0, 255, 7).astype(np.uint8)  # includes fully transparent
    path = tmp_path / "rgba.png"
    Image.fromarray(rgba, "RGBA").save(path)
    out = load_image(path)
    assert out.shape == (6, 7, 3)
    np.testing.assert_array_equal(out, rgba[..., :3])


def test_16bit_png_scaled_by_257_rounded(tmp_path: Path) -> None:
    values = np.array([0, 128, 129, 257, 385, 386, 32896, 65279, 65535], np.uint16)
    bgr16 = np.zeros((1, values.size, 3), np.uint16)
    bgr16[0, :, 2] = values  # R channel in BGR layout
    bgr16[0, :, 0] = 65535 - values  # B channel
    path = tmp_path / "deep.png"
    assert cv2.imwrite(str(path), bgr16)
    out = load_image(path)
    assert out.dtype == np.uint8
    expected_r = [0, 0, 1, 1, 1, 2, 128, 254, 255]  # round(v / 257)
    np.testing.assert_array_equal(out[0, :, 0], expected_r)
    np.testing.assert_array_equal(out[0, :, 2], [255, 255, 254, 254, 254, 253, 127, 1, 0])
    np.testing.assert_array_equal(out[0, :, 1], 0)


def test_16bit_grayscale(tmp_path: Path) -> None:
    path = tmp_path / "g16.png"
    cv2.imwrite(str(path), np.array([[0, 257 * 7, 65535]], np.uint16))
    out = load_image(path)
    np.testing.assert_array_equal(out[0], [[0, 0, 0], [7, 7, 7], [255, 255, 255]])


def test_one_pixel_image(tmp_path: Path) -> None:
    path = tmp_path / "one.png"
    Image.fromarray(np.array([[[10, 20, 30]]], np.uint8)).save(path)
    out = load_image(path)
    assert out.shape == (1, 1, 3)
    assert out[0, 0].tolist() == [10, 20, 30]


def _save_jpeg_with_orientation(path: Path, rgb: np.ndarray, orientation: int) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(rgb).save(path, quality=95, exif=exif.tobytes())


def test_exif_rotated_jpeg_comes_out_upright(tmp_path: Path) -> None:
    # 40 wide x 24 high as stored, big colour blocks so JPEG loss does not matter.
    stored = np.zeros((24, 40, 3), np.uint8)
    stored[:8, :8] = (255, 0, 0)  # red block at the stored top-left
    stored[-8:, -8:] = (0, 0, 255)  # blue block at the stored bottom-right
    path = tmp_path / "rot6.jpg"
    _save_jpeg_with_orientation(path, stored, 6)  # 6 = rotate 90 degrees clockwise to view

    out = load_image(path)
    assert out.shape == (40, 24, 3)  # height and width swapped
    # Rotating clockwise moves the stored top-left corner to the top-right.
    assert out[2, -3, 0] > 200 and out[2, -3, 2] < 50
    assert out[-3, 2, 2] > 200 and out[-3, 2, 0] < 50
    # Same picture as Pillow's reference transform (within JPEG decoder differences).
    with Image.open(path) as im:
        ref = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    assert ref.shape == out.shape
    assert np.abs(ref.astype(int) - out.astype(int)).max() <= 2


@pytest.mark.parametrize("orientation", [1, 3, 5, 6, 8])
def test_an_avif_photo_is_read_upright_as_pillow_shows_it(tmp_path: Path, orientation: int) -> None:
    """AVIF (phones and browsers save it; OpenCV's wheels do not decode it) is read through Pillow:
    the picture as stored, turned by its ``irot``/``imir`` (Pillow's EXIF orientation) as a JPEG's
    tag; its size from the headers is the loaded one; alpha dropped; a folder lists it; a damaged
    file is one line (a hostile-media trial's were skipped as unreadable)."""
    stored = np.zeros((24, 40, 3), np.uint8)
    stored[:8, :8] = (255, 0, 0)  # big blocks: AV1's loss does not matter
    stored[-8:, -8:] = (0, 0, 255)
    stored[:8, -8:] = (0, 255, 0)
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / "photo.avif"
    Image.fromarray(stored).save(path, quality=95, exif=exif.tobytes())
    out = load_image(path)
    with Image.open(path) as im:
        ref = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    upright = apply_exif_orientation(stored, orientation)
    assert out.shape == ref.shape == upright.shape and image_size(path) == out.shape[:2]
    assert np.abs(ref.astype(int) - out.astype(int)).max() <= 2
    assert np.abs(upright.astype(int) - out.astype(int)).mean() < 4, np.abs(upright.astype(int) - out.astype(int)).mean()
    assert np.array_equal(load_image(path, orientation=False).shape, stored.shape)
    if orientation == 1:
        rgba = np.dstack([stored, np.full((24, 40), 7, np.uint8)])
        Image.fromarray(rgba).save(tmp_path / "alpha.avif", quality=95)
        assert np.abs(load_image(tmp_path / "alpha.avif").astype(int) - stored).mean() < 4  # (the stored colours kept)
        assert [p.name for p in iter_image_paths([tmp_path], warn=False)] == ["alpha.avif", "photo.avif"]
        (tmp_path / "cut.avif").write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        with pytest.raises(InputError) as info:
            load_image(tmp_path / "cut.avif")
        assert str(info.value) == f"{tmp_path / 'cut.avif'}: AVIF file is truncated or corrupt; re-download or re-export it"
        # sizes from its header: wider than libavif takes (was "truncated or corrupt": a break-it trial), or too many pixels
        raw = path.read_bytes()
        at = raw.find(b"ispe")
        for (w, h), said in (((33000, 64), "wider or taller than the AVIF decoder (libavif) takes (32768 pixels)"),
                             ((20000, 20000), "more than wbcap's limit")):
            wide = tmp_path / f"{w}.avif"
            wide.write_bytes(raw[:at + 8] + w.to_bytes(4, "big") + h.to_bytes(4, "big") + raw[at + 16:])
            with pytest.raises(InputError) as info:
                load_image(wide)
            assert str(info.value).startswith(f"{wide}: the image is {w}x{h} pixels") and said in str(info.value)


def _pq_rgb48(rgb: np.ndarray) -> np.ndarray:
    """An SDR (BT.709) ``(H, W, 3)`` uint8 picture as a 10-bit PQ BT.2020 picture stores it, its
    values in 16 bits (full range), from the standards (not by FFmpeg, which the reader's
    conversion is): BT.709's inverse OETF, BT.2087's BT.709 to BT.2020 matrix, SDR white at 203
    cd/m2 (BT.2408) and SMPTE ST 2084's inverse EOTF."""
    v = rgb.astype(np.float64) / 255
    linear = np.where(v < 0.081, v / 4.5, ((v + 0.099) / 1.099) ** (1 / 0.45)) @ np.array(
        [[0.6274, 0.3293, 0.0433], [0.0691, 0.9195, 0.0114], [0.0164, 0.0880, 0.8956]]).T
    y = np.clip(linear * 203 / 10000, 0, 1)
    m1, m2, c1, c2, c3 = 2610 / 16384, 2523 / 4096 * 128, 3424 / 4096, 2413 / 4096 * 32, 2392 / 4096 * 32
    signal = ((c1 + c2 * y ** m1) / (1 + c3 * y ** m1)) ** m2
    return np.round(signal * 1023).astype(np.uint16) << 6


@pytest.mark.parametrize("orientation", [1, 2, 6, 7])
def test_an_heic_photo_is_read_upright_as_an_iphone_writes_it(tmp_path: Path, orientation: int, monkeypatch,
                                                               caplog) -> None:
    """HEIC (an iPhone's photos; OpenCV, Pillow and the FFmpeg reader give none whole: FFmpeg gave
    one tile of a tiled photo as the frame) is read through libheif (pi-heif): a tiled picture
    whole, turned and mirrored by its ``irot``/``imir`` and not again by the EXIF orientation
    written beside them (as an iPhone writes both); its size from the headers is the loaded one;
    grey, alpha and 10-bit pictures as 8-bit RGB; a damaged file, one too large and a missing
    decoder are one line each; a picture collection is its primary picture with a warning."""
    import logging
    import sys

    import pillow_heif

    from wbcap.io.images import EXIF_DISPLAY, _header_size, check_image_files, image_display, is_heic

    stored = np.zeros((48, 80, 3), np.uint8)
    stored[:16, :16] = (255, 0, 0)  # big blocks in separate tiles: a turn, a mirror or a tile out of place shows
    stored[-16:, -16:] = (0, 0, 255)
    stored[:16, -16:] = (0, 255, 0)
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / "IMG_0001.HEIC"
    pillow_heif.from_pillow(Image.fromarray(stored)).save(path, quality=-1, exif=exif.tobytes(), tile_size=32)
    raw = path.read_bytes()
    assert is_heic(raw[:512]) and raw.count(b"ispe") > 1  # (a grid of tiles, as phones write)
    out = load_image(path)
    upright = apply_exif_orientation(stored, orientation)
    assert out.shape == upright.shape and image_size(path) == out.shape[:2]
    # (its size from its headers when a sequence's files are checked: a folder of phone photos was decoded twice)
    assert _header_size(path) == out.shape[:2]
    assert np.abs(upright.astype(int) - out.astype(int)).mean() < 1, np.abs(upright.astype(int) - out.astype(int)).mean()
    assert np.array_equal(load_image(path, orientation=False), out)  # (decoded upright either way: the docstring)
    with monkeypatch.context() as m:  # (the EXIF tag an iPhone writes beside its irot, as a Pillow with a HEIF plug-in reads it)
        m.setattr("wbcap.io.images._exif_orientation", lambda data: orientation)
        assert np.array_equal(load_image(path), out)  # (not turned again)
    # the turn said as a JPEG's of that tag (meta.json's `display`; an iPhone's portrait photo was said unturned)
    assert image_display(path) == EXIF_DISPLAY[orientation]
    if orientation != 1:
        return
    grey = tmp_path / "grey.heic"
    pillow_heif.from_pillow(Image.fromarray(stored[:, :, 1])).save(grey, quality=-1)
    assert np.abs(load_image(grey).astype(int) - stored[:, :, 1:2]).mean() < 1
    alpha = tmp_path / "alpha.heif"
    pillow_heif.from_pillow(Image.fromarray(np.dstack([stored, np.full((48, 80), 7, np.uint8)]))).save(alpha, quality=-1)
    assert np.abs(load_image(alpha).astype(int) - stored).mean() < 1  # (the stored colours kept)
    deep = tmp_path / "deep.hif"  # (a camera's 10-bit HEIF)
    pillow_heif.from_bytes("RGB;16", (80, 48), (stored.astype(np.uint16) * 257).tobytes()).save(deep, quality=-1)
    assert pillow_heif.open_heif(deep, convert_hdr_to_8bit=False).info["bit_depth"] == 10
    assert np.abs(load_image(deep).astype(int) - stored).mean() < 1
    # a camera's HDR HEIF (PQ, BT.2020: what Canon bodies write), written from the picture by the standards'
    # formulas: brought back to SDR as HDR video is (read as SDR it was dull and dark: a review)
    pq = _pq_rgb48(stored)
    camera = tmp_path / "camera_pq.hif"
    pillow_heif.from_bytes("RGB;16", (80, 48), pq.tobytes()).save(
        camera, quality=-1, color_primaries=9, transfer_characteristics=16, matrix_coefficients=9, full_range_flag=1)
    assert pillow_heif.open_heif(camera, convert_hdr_to_8bit=False).info["nclx_profile"]["transfer_characteristics"] == 16
    as_sdr = pillow_heif.open_heif(camera).to_pillow()  # (its signal read as SDR, as it was)
    err, before = (np.abs(np.asarray(a).astype(int)[:, :, :3] - stored).mean() for a in (load_image(camera), as_sdr))
    assert err < 8 and before > 15, (err, before)  # (its black background is black either way)
    (tmp_path / "cut.heic").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(InputError) as info:
        load_image(tmp_path / "cut.heic")
    assert str(info.value) == f"{tmp_path / 'cut.heic'}: HEIC file is truncated or corrupt; re-download or re-export it"
    # (a sequence's files checked before a run: its headers, which come first, gave its size and passed it, a review)
    with pytest.raises(InputError) as info:
        check_image_files([path, tmp_path / "cut.heic"], out.shape[:2])
    assert str(info.value) == f"{tmp_path / 'cut.heic'}: HEIC file is truncated or corrupt; re-download or re-export it"
    other = tmp_path / "other.heic"  # (its pictures of a kind libheif has no decoder for: said so, with libheif's words)
    other.write_bytes(grey.read_bytes().replace(b"hvc1", b"av02"))  # (one picture, not tiled)
    with pytest.raises(InputError) as info:
        load_image(other)
    assert str(info.value).startswith(f"{other}: an HEIC picture libheif cannot decode (") and str(info.value).endswith(
        "unsupported or non-existing image); convert it to JPEG or PNG"), str(info.value)
    at = raw.find(b"ispe")
    huge = tmp_path / "huge.heic"
    huge.write_bytes(raw[:at + 8] + (20000).to_bytes(4, "big") * 2 + raw[at + 16:])
    with pytest.raises(InputError) as info:
        load_image(huge)
    assert str(info.value).startswith(f"{huge}: the image is 20000x20000 pixels") and "more than wbcap's limit" in str(info.value)
    burst = tmp_path / "burst.heic"
    frames = [Image.fromarray(np.full((20, 30, 3), v, np.uint8)) for v in (200, 40)]
    collection = pillow_heif.from_pillow(frames[0])
    collection.add_from_pillow(frames[1])
    collection.save(burst, quality=-1)
    with caplog.at_level(logging.WARNING, logger="wbcap.io.images"):
        assert abs(load_image(burst).mean() - 200) < 2
    assert "burst.heic: an HEIC of several pictures; only its primary one is used" in caplog.text
    monkeypatch.setitem(sys.modules, "pi_heif", None)  # (an install without it)
    with pytest.raises(InputError) as info:
        load_image(path)
    assert str(info.value) == (f"{path}: an HEIC picture, and its decoder is not installed: `pip install pi-heif` "
                               "(wbcap's install brings it), or convert it to JPEG or PNG")


def test_heic_brands() -> None:
    """An HEIC by its ``ftyp`` brands (ISO/IEC 23008-12 Annex B); an AVIF or an MP4 is none."""
    from wbcap.io.images import is_heic

    def ftyp(major: bytes, *compatible: bytes) -> bytes:
        body = major + b"\0\0\0\0" + b"".join(compatible)
        return (8 + len(body)).to_bytes(4, "big") + b"ftyp" + body

    assert all(is_heic(ftyp(b, b"mif1")) for b in (b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx"))
    assert is_heic(ftyp(b"mif1", b"miaf", b"heic")) and is_heic(ftyp(b"msf1", b"hevc"))
    assert not is_heic(ftyp(b"mif1", b"avif", b"heic")) and not is_heic(ftyp(b"avif", b"mif1"))
    assert not is_heic(ftyp(b"mif1", b"miaf")) and not is_heic(ftyp(b"isom", b"avc1")) and not is_heic(b"\xff\xd8\xff")


def test_an_animated_avif_is_its_first_frame_with_a_warning(tmp_path: Path, caplog) -> None:
    """As an animated PNG or WebP (the README says so of AVIF too: a review found no warning)."""
    import logging

    from wbcap.io.images import is_avif

    frames = [Image.fromarray(np.full((20, 30, 3), v, np.uint8)) for v in (200, 40, 120)]
    frames[0].save(tmp_path / "anim.avif", save_all=True, append_images=frames[1:], duration=100)
    with caplog.at_level(logging.WARNING, logger="wbcap.io.images"):
        out = load_image(tmp_path / "anim.avif")
    assert abs(out.mean() - 200) < 3
    assert "anim.avif: an animated or multi-page image; only its first frame is used" in caplog.text
    # brands: an AVIF as Pillow takes one; a HEIF without AV1, and an MP4, are not
    def ftyp(major: bytes, *compatible: bytes) -> bytes:
        body = major + b"\0\0\0\0" + b"".join(compatible)
        return (8 + len(body)).to_bytes(4, "big") + b"ftyp" + body

    assert is_avif(ftyp(b"avif", b"mif1")) and is_avif(ftyp(b"mif1", b"avif")) and is_avif(ftyp(b"avis"))
    assert not is_avif(ftyp(b"heic", b"mif1")) and not is_avif(ftyp(b"isom", b"avc1")) and not is_avif(b"\xff\xd8\xff")


@pytest.mark.parametrize("orientation", range(1, 9))
def test_apply_exif_orientation_matches_pillow(orientation: int) -> None:
    img = _pattern(5, 7)
    im = Image.fromarray(img)
    im.getexif()[0x0112] = orientation  # getexif() returns the image's cached Exif object
    ref = np.asarray(ImageOps.exif_transpose(im))
    np.testing.assert_array_equal(apply_exif_orientation(img, orientation), ref)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_image_display_is_the_turn_load_image_makes(tmp_path: Path, orientation: int) -> None:
    """meta.json's ``display`` of a photo (a user trial: 0 for an EXIF-rotated one) is the turn
    load_image makes, in the display-matrix convention the video reader applies."""
    from wbcap.io.images import image_display
    from wbcap.io.video_reader import apply_rotation

    img = _pattern(5, 7)
    path = tmp_path / f"o{orientation}.png"
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(img).save(path, exif=exif.tobytes())  # (PNG: lossless, so the pixels compare exactly)
    rotation, mirrored = image_display(path)
    np.testing.assert_array_equal(apply_rotation(img, rotation, mirrored), load_image(path))
    assert (rotation, mirrored) != (0, False) or orientation == 1


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("kind", ["rgb", "rgb lzw", "square", "gray 16-bit"])
def test_an_oriented_tiff_is_turned_upright_once(tmp_path: Path, orientation: int, kind: str) -> None:
    """OpenCV's TIFF decoder applies the orientation tag itself; wbcap applied it once more (a
    user trial: tag 3 came out upside down, tag 6 sideways and "no person found")."""
    h, w = (9, 9) if kind == "square" else (6, 11)
    stored = _pattern(h, w)
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f"o{orientation}.tiff"
    if kind == "gray 16-bit":
        gray = stored[..., 0].astype(np.uint16) * 257
        Image.fromarray(gray).save(path, exif=exif)
        stored = np.repeat(stored[..., :1], 3, axis=2)
    else:
        Image.fromarray(stored).save(path, exif=exif, **({"compression": "tiff_lzw"} if "lzw" in kind else {}))
    upright = load_image(path)
    np.testing.assert_array_equal(upright, apply_exif_orientation(stored, orientation))
    assert image_size(path) == upright.shape[:2]
    np.testing.assert_array_equal(load_image(path, orientation=False), stored)  # (a dataset's pixels: as stored)


@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
def test_image_size_from_headers_is_the_loaded_shape(tmp_path: Path, orientation: int) -> None:
    path = tmp_path / f"o{orientation}.jpg"
    _save_jpeg_with_orientation(path, _pattern(20, 32), orientation)
    assert image_size(path) == load_image(path).shape[:2]
    (tmp_path / "junk.jpg").write_bytes(b"not an image")
    assert image_size(tmp_path / "junk.jpg") is None
    assert image_size(tmp_path / "missing.jpg") is None


def test_truncated_jpeg_is_an_input_error(tmp_path: Path) -> None:
    path = tmp_path / "cut.jpg"
    Image.fromarray(_pattern(64, 64)).save(path, quality=90)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="cut.jpg") as err:
        load_image(path)
    assert "truncated" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("keep", [0.3, 0.9])
@pytest.mark.parametrize("damaged", ["refuse", "warn"])
def test_truncated_png_is_an_input_error(tmp_path: Path, keep: float, damaged: str, capfd) -> None:
    """Also for a dataset's image (``damaged="warn"``: libpng decodes none of a cut PNG), and
    without libpng's own lines on stderr ("libpng error: PNG input buffer is incomplete" beside
    the message, in training's loader)."""
    path = tmp_path / "cut.png"
    Image.fromarray(_pattern(64, 64)).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(InputError, match="cut.png: image file is truncated"):
        load_image(path, damaged=damaged)
    noise = tmp_path / "noise.png"  # (its cut at 90 % makes libpng print "libpng error: Read Error" itself)
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (200, 200, 3), dtype=np.uint8)).save(noise)
    noise.write_bytes(noise.read_bytes()[: int(noise.stat().st_size * keep)])
    with pytest.raises(InputError, match="noise.png: image file is truncated"):
        load_image(noise, damaged=damaged)
    assert "libpng" not in capfd.readouterr().err


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_truncation_caught_when_opencv_returns_a_partial_image(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, suffix: str
) -> None:
    # OpenCV < 4.10 decodes a cut-off stream into a grey-padded image with only a warning;
    # simulate that decoder so the check is exercised whatever OpenCV is installed.
    path = tmp_path / f"partial{suffix}"
    Image.fromarray(_pattern(64, 64)).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    monkeypatch.setattr(cv2, "imdecode", lambda buf, flags: np.full((64, 64, 3), 128, np.uint8))
    with pytest.raises(InputError, match=f"partial{suffix}: image file is truncated"):
        load_image(path)


def _smooth(h: int, w: int) -> np.ndarray:
    """(H, W, 3) uint8 RGB gradients: small entropy-coded data, no pixel at exactly (128, 128, 128)."""
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([40 + 150 * x / w, 30 + 180 * y / h, 200 - 60 * (x + y) / (h + w)], -1)
    img[np.abs(img - 128) < 1] = 130
    return img.astype(np.uint8)


def _with_stray_marker(data: bytes, marker: bytes = b"\xff\xd0") -> bytes:
    """The JPEG ``data`` with ``marker`` (a restart marker by default) written over two bytes in
    the middle of its scan."""
    scan = data.index(b"\xff\xda") + 2
    middle = scan + (len(data) - scan) // 2
    return data[:middle] + marker + data[middle + 2:]


@pytest.mark.parametrize("mode", ["RGB", "L", "CMYK"])
def test_jpeg_damaged_mid_scan_is_an_input_error_before_opencv_prints(tmp_path: Path, capfd, mode: str) -> None:
    rgb = _smooth(96, 128)
    path = tmp_path / f"damaged_{mode}.jpg"
    Image.fromarray(rgb).convert(mode).save(path, quality=90)
    whole = load_image(path)  # (the undamaged file loads, in every colour space)
    expected = np.asarray(Image.fromarray(rgb).convert(mode).convert("RGB"), float)
    np.testing.assert_allclose(whole.astype(float), expected, atol=12)
    path.write_bytes(_with_stray_marker(path.read_bytes()))
    if mode == "RGB":  # why: OpenCV decodes the rest of the scan grey, with a warning on stderr only
        grey = (cv2.imdecode(np.frombuffer(path.read_bytes(), np.uint8), cv2.IMREAD_COLOR) == 128).all(-1)
        assert grey.mean() > 0.2, grey.mean()
        assert "Corrupt JPEG data" in capfd.readouterr().err
    with pytest.raises(InputError) as err:
        load_image(path)
    said = str(err.value)
    assert said.startswith(f"{path}: image file is truncated or corrupt (libjpeg: premature end of data segment"), said
    assert said.endswith("re-download or re-export it") and "\n" not in said
    assert capfd.readouterr().err == ""  # refused before OpenCV decodes it


def test_jpeg_with_an_undefined_marker_mid_scan_is_an_input_error(tmp_path: Path, capfd) -> None:
    """A byte pair 0xFF 0x17 inside the scan (found in a photo damaged in the middle): OpenCV
    decodes the rest grey with a warning; libjpeg's strict decode stops at "Unsupported marker
    type 0x17", which is damage too."""
    path = tmp_path / "stray.jpg"
    Image.fromarray(_smooth(96, 128)).save(path, quality=90)
    path.write_bytes(_with_stray_marker(path.read_bytes(), b"\xff\x17"))
    grey = (cv2.imdecode(np.frombuffer(path.read_bytes(), np.uint8), cv2.IMREAD_COLOR) == 128).all(-1)
    assert grey.mean() > 0.2, grey.mean()  # (why it must be refused)
    capfd.readouterr()
    with pytest.raises(InputError) as err:
        load_image(path)
    said = str(err.value)
    assert said.startswith(f"{path}: image file is truncated or corrupt (libjpeg: Unsupported marker type 0x17"), said
    assert capfd.readouterr().err == ""


def test_jpeg_with_extraneous_bytes_before_a_marker_still_loads(tmp_path: Path) -> None:
    """Some cameras and editors write a few bytes too many between two markers: libjpeg warns
    ("2 extraneous bytes before marker 0xda") and loses no pixel."""
    path = tmp_path / "extra.jpg"
    Image.fromarray(_smooth(32, 48)).save(path, quality=90)
    data = path.read_bytes()
    expected = load_image(path)
    scan = data.index(b"\xff\xda")
    path.write_bytes(data[:scan] + b"\x00\x00" + data[scan:])
    np.testing.assert_array_equal(load_image(path), expected)


def test_jpeg_with_trailing_bytes_still_loads(tmp_path: Path) -> None:
    path = tmp_path / "trailer.jpg"
    Image.fromarray(_pattern(16, 16)).save(path, quality=90)
    path.write_bytes(path.read_bytes() + b"SEFT camera trailer")
    assert load_image(path).shape == (16, 16, 3)


def test_text_file_named_jpg_is_an_input_error(tmp_path: Path) -> None:
    path = tmp_path / "notes.jpg"
    path.write_text("this is not an image\n")
    with pytest.raises(InputError, match="notes.jpg.*not an image"):
        load_image(path)


def test_missing_empty_and_folder_are_input_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="nope.png: no such file"):
        load_image(tmp_path / "nope.png")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(InputError, match="empty.png: file is empty"):
        load_image(tmp_path / "empty.png")
    with pytest.raises(InputError, match="is a folder"):
        load_image(tmp_path)


def test_links_that_lead_nowhere_are_listed_and_said_to_be_links(tmp_path: Path) -> None:
    """A dangling link or a loop of links among a folder's or a pattern's images is listed in its
    place (a sequence left it out without a word and every later frame took the time of the one
    before: a break-it trial) and refused, when read, as a link, with its target."""
    folder = tmp_path / "seq"
    folder.mkdir()
    for i in (0, 2):
        cv2.imwrite(str(folder / f"{i:04d}.png"), np.zeros((8, 8, 3), np.uint8))
    (folder / "0001.png").symlink_to(tmp_path / "gone" / "0001.png")
    (folder / "0003.png").symlink_to("0004.png")
    (folder / "0004.png").symlink_to("0003.png")
    (folder / "sub.png").mkdir()  # (a folder with an image's name is no image)
    names = ["0000.png", "0001.png", "0002.png", "0003.png", "0004.png"]
    assert [p.name for p in iter_image_paths(folder)] == names
    assert [p.name for p in iter_image_paths(str(folder / "*.png"))] == names
    for name, target in (("0001.png", tmp_path / "gone" / "0001.png"), ("0003.png", "0004.png")):
        said = (f"{folder / name}: is a symbolic link to {target}, which leads to no file (the link is broken, or a "
                "loop of links); fix or remove the link")
        with pytest.raises(InputError) as err:
            load_image(folder / name)
        assert str(err.value) == said
        with pytest.raises(InputError) as err:
            iter_image_paths(folder / name)  # (given by itself)
        assert str(err.value) == said
    with pytest.raises(InputError, match=r"nope.png: no such file or folder; check the path$"):
        iter_image_paths(tmp_path / "nope.png")


def test_messi_sample_loads_as_rgb(shared_dir: Path) -> None:
    path = shared_dir / "media" / "messi5.jpg"
    if not path.is_file():
        pytest.skip(f"shared sample media not present ({path})")
    img = load_image(path)
    assert img.shape == (342, 548, 3) and img.dtype == np.uint8
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    np.testing.assert_array_equal(img, bgr[:, :, ::-1])  # same decoder as the reference
    # The pitch in the bottom rows is green.
    r, g, b = img[-20:, :150].reshape(-1, 3).mean(axis=0)
    assert g > r + 20 and g > b + 20


def test_iter_image_paths_expands_folders_and_globs(tmp_path: Path) -> None:
    for name in ["f10.jpg", "f2.png", "f1.JPG", "notes.txt", ".hidden.jpg", "f3.jpg "]:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "deep.png").write_bytes(b"x")
    explicit = tmp_path / "notes.txt"
    empty = tmp_path / "empty_dir"
    empty.mkdir()
    (empty / "readme.md").write_text("x")

    got = iter_image_paths([tmp_path, explicit, tmp_path / "f2.png"])
    assert [p.name for p in got] == ["f1.JPG", "f2.png", "f3.jpg ", "f10.jpg", "notes.txt"]

    got = iter_image_paths(str(tmp_path / "f*"))
    assert [p.name for p in got] == ["f1.JPG", "f2.png", "f3.jpg ", "f10.jpg"]
    got = iter_image_paths(str(tmp_path / "**" / "*.png"))
    assert [p.name for p in got] == ["f2.png", "deep.png"]

    with pytest.raises(InputError, match="matches no image"):
        iter_image_paths(str(tmp_path / "*.bmp"))
    with pytest.raises(InputError, match="missing.jpg: no such file"):
        iter_image_paths([tmp_path / "missing.jpg"])
    with pytest.raises(InputError, match="no image files"):
        iter_image_paths([empty])
    # a folder of videos (a user trial: only the glob of the same files said why)
    clips = tmp_path / "clips"
    clips.mkdir()
    for name in ("short1.mp4", "IMG_0001.MOV", ".hidden.mp4", "notes.txt"):
        (clips / name).write_bytes(b"x")
    with pytest.raises(InputError) as info:
        iter_image_paths([clips])
    assert str(info.value) == (f"{clips}: folder holds no image file but 2 video files (IMG_0001.MOV, short1.mp4); a "
                               "folder is read as an image sequence: give a video by its own path, not a folder "
                               "(`wbcap run VIDEO`, one run per video)")
    with pytest.raises(InputError) as info:
        iter_image_paths(str(clips / "*.[mM]*"))
    assert str(info.value) == (f"{clips / '*.[mM]*'}: pattern matches no image file but 2 other files (IMG_0001.MOV, "
                               "short1.mp4); a pattern is read as an image sequence: give a video by its own path, not "
                               "a pattern (`wbcap run VIDEO`, one run per video)")


def test_no_image_messages_say_what_is_read_and_where(tmp_path):
    """A photo user's folder held a JFIF (a JPEG, as browsers save them), a HEIC (now read: a JPEG XL here) and a subfolder of
    JPEGs: the JFIF was left out without a word, the subfolder too, and a glob of the folder was
    told to give a video. JFIF is read; the others are said."""
    from wbcap.errors import InputError
    from wbcap.io.images import IMAGE_EXTENSIONS, iter_image_paths

    kinds = ", ".join(sorted(IMAGE_EXTENSIONS))
    tmp_path = tmp_path / "Photos [2024]"  # (a name glob reads as a pattern: the pattern said is escaped, a review)
    tmp_path.mkdir()
    (tmp_path / "Day1").mkdir()
    (tmp_path / "Day1" / "a.jpg").write_bytes(b"x")
    (tmp_path / "IMG_1.jxl").write_bytes(b"x")
    with pytest.raises(InputError) as info:
        iter_image_paths([tmp_path], warn=False)
    assert str(info.value) == (f"{tmp_path}: folder holds no image files ({kinds}); a folder is read without its "
                               f"subfolders, and Day1 holds some: name it, or all with a pattern such as "
                               f"'{tmp_path.parent / 'Photos [[]2024]' / '**'}'")  # (shell-quoted: pasted back as is)
    assert [p.name for p in iter_image_paths([str(tmp_path.parent / "Photos [[]2024]" / "**")], warn=False)] == ["a.jpg"]
    pattern = tmp_path.parent / "Photos [[]2024]" / "*"
    with pytest.raises(InputError) as info:
        iter_image_paths([str(pattern)], warn=False)
    assert str(info.value) == (f"{pattern}: pattern matches no image file but 1 other file (IMG_1.jxl): "
                               f"images are read from {kinds} files; convert the .jxl pictures to JPEG or PNG")
    quoted = tmp_path.parent / "it's"  # (the pattern said is one shell word: pasted back, it is the pattern)
    (quoted / "sub").mkdir(parents=True)
    (quoted / "sub" / "p.jpg").write_bytes(b"x")
    with pytest.raises(InputError) as info:
        iter_image_paths([quoted], warn=False)
    assert str(info.value).endswith(f"""or all with a pattern such as '{tmp_path.parent}/it'"'"'s/**'"""), str(info.value)
    (tmp_path / "download.jfif").write_bytes(b"x")
    assert [p.name for p in iter_image_paths([tmp_path], warn=False)] == ["download.jfif"]


def test_a_folder_of_images_says_which_subfolders_of_images_it_skips(tmp_path, caplog):
    """Beside a folder's own images, those of its subfolders were left out without a word (a
    photo user's trial): a warning names them and the pattern that reads them all."""
    import logging

    from wbcap.io.images import iter_image_paths

    (tmp_path / "Day2").mkdir()
    (tmp_path / "Day2" / "b.jpg").write_bytes(b"x")
    (tmp_path / "notes").mkdir()
    (tmp_path / "a.jpg").write_bytes(b"x")
    with caplog.at_level(logging.WARNING, logger="wbcap.io.images"):
        assert [p.name for p in iter_image_paths([tmp_path])] == ["a.jpg"]
    assert [r.getMessage() for r in caplog.records] == [
        f"{tmp_path}: skipped the images in its subfolder Day2 (a folder is read without its subfolders; "
        f"'{tmp_path}/**' reads them all)"]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="wbcap.io.images"):
        iter_image_paths([tmp_path], warn=False)
    assert not caplog.records


def test_an_animated_image_says_only_its_first_frame_is_used(tmp_path, caplog):
    """An APNG, animated WebP, multi-page TIFF or animated GIF ran silently as its first frame
    (found by user trials): a warning says so; still images (PNG, WebP, lossy and lossless,
    TIFF, GIF) do not warn."""
    import logging

    from PIL import Image

    frames = [Image.fromarray(np.full((20, 30, 3), v, np.uint8)) for v in (10, 200)]
    animated = {"a.png": {}, "a.webp": {"lossless": True}, "a.tiff": {}, "a.gif": {}}  # (a TIFF of two pages: a user trial)
    still = {"s.png": {}, "s.webp": {"lossless": True}, "l.webp": {"quality": 80}, "s.tiff": {}, "s.gif": {}}
    for name, kw in animated.items():
        frames[0].save(tmp_path / name, save_all=True, append_images=frames[1:], duration=100, **kw)
    for name, kw in still.items():
        frames[0].save(tmp_path / name, **kw)
    for name in (*animated, *still):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="wbcap.io.images"):
            image = load_image(tmp_path / name)
        assert image.shape == (20, 30, 3) and abs(int(image[0, 0, 0]) - 10) <= 3  # the first frame
        said = f"{tmp_path / name}: an animated or multi-page image; only its first frame is used" in caplog.text
        assert said == (name in animated), (name, caplog.text)
        # (a GIF: itself, in Python's words outside a command: an API trial)
        gif_fix = f"(for all of them, run_video(VideoJob(source={str(tmp_path / name)!r})) reads it frame by frame)"
        assert (gif_fix in caplog.text) == (name == "a.gif"), caplog.text


def test_a_gif_is_read_as_ffmpeg_reads_its_first_frame(tmp_path: Path) -> None:
    """A still GIF was refused by `wbcap image` (the OpenCV wheels decode no GIF: a user trial):
    FFmpeg decodes it, the same pixels as PyAV's first frame and Pillow's, a transparent pixel
    white; one cut short is refused in one line; a folder lists GIFs among its pictures, while
    a GIF named alone is a video to `wbcap run`."""
    import av
    from PIL import Image

    from wbcap.io.video_reader import _video_path_of

    rng = np.random.default_rng(0)
    picture = Image.fromarray(rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)).quantize(64)
    picture.info["transparency"] = 5  # (a palette index shown as its colour)
    picture.save(tmp_path / "still.gif")
    image = load_image(tmp_path / "still.gif")
    with av.open(str(tmp_path / "still.gif")) as container:
        first = next(container.decode(video=0)).to_ndarray(format="rgb24")
    assert image.shape == (37, 53, 3) and image.dtype == np.uint8 and image.flags.c_contiguous
    np.testing.assert_array_equal(image, first)
    shown = np.asarray(picture.convert("RGB")).copy()
    shown[np.asarray(picture) == 5] = 255
    assert (image == 255).all(axis=2).sum() >= (np.asarray(picture) == 5).sum() > 0
    np.testing.assert_array_equal(image, shown)
    data = (tmp_path / "still.gif").read_bytes()
    (tmp_path / "cut.gif").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError) as info:
        load_image(tmp_path / "cut.gif")
    assert str(info.value) == f"{tmp_path / 'cut.gif'}: image file is truncated or corrupt; re-download or re-export it"
    cut = load_image(tmp_path / "cut.gif", damaged="warn")  # (a dataset's: the pixels FFmpeg decoded, with a warning)
    assert cut.shape == image.shape and (cut == image).all(axis=2).mean() > 0.2
    (tmp_path / "cut.gif").write_bytes(data[: len(data) // 2] + b";")  # (cut where a ";" happens to end it: a review)
    with pytest.raises(InputError, match="truncated or corrupt"):
        load_image(tmp_path / "cut.gif")
    assert [p.name for p in iter_image_paths(tmp_path)] == ["cut.gif", "still.gif"]
    assert _video_path_of(tmp_path / "still.gif") == tmp_path / "still.gif"


def _gif_placed(source: Path, dest: Path, screen: tuple[int, int], at: tuple[int, int], background: int = 0) -> Path:
    """``source`` (a one-frame GIF with a global colour table) with its logical screen set to
    ``screen`` (W, H), its frame placed at ``at`` (left, top) and its background index set."""
    import struct

    data = bytearray(source.read_bytes())
    struct.pack_into("<HH", data, 6, *screen)
    data[11] = background
    pos = 13 + (3 * 2 ** ((data[10] & 7) + 1) if data[10] & 0x80 else 0)
    while data[pos] == 0x21:  # (extensions: label, then sub-blocks up to a zero length)
        pos += 2
        while data[pos]:
            pos += data[pos] + 1
        pos += 1
    assert data[pos] == 0x2C  # (the image descriptor)
    struct.pack_into("<HH", data, pos + 1, *at)
    dest.write_bytes(bytes(data))
    return dest


def test_a_gif_is_the_first_frame_wbcap_run_sees(tmp_path: Path, caplog) -> None:
    """`wbcap image` and `wbcap run` of a GIF saw different first frames where the frame does not
    fill the GIF's screen (Pillow painted palette entry 0 around it, FFmpeg the background; a frame
    past the screen's edge grew Pillow's picture), and a GIF whose comment is not UTF-8 crashed
    `wbcap run` (a break-it trial): FFmpeg decodes both; an animated GIF named as a photo is a
    video to `wbcap run`, as a video named so is."""
    from PIL import Image

    from wbcap.io.video_reader import _video_path_of, open_frames

    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)).quantize(32).save(tmp_path / "frame.gif")
    cases = {"offset": ((64, 48), (10, 8), 7), "past the edge": ((50, 40), (20, 20), 0)}
    for name, (screen, at, background) in cases.items():
        gif = _gif_placed(tmp_path / "frame.gif", tmp_path / f"{name}.gif", screen, at, background)
        image = load_image(gif)
        first = next(iter(open_frames(gif))).image
        assert image.shape == (screen[1], screen[0], 3), name
        np.testing.assert_array_equal(image, first, err_msg=name)
    far = _gif_placed(tmp_path / "frame.gif", tmp_path / "far.gif", (50, 40), (60000, 60000))  # (a corrupt descriptor)
    with pytest.raises(InputError) as info:  # (Pillow's size, 60040 x 60030, was refused as too big to read)
        load_image(far)
    assert str(info.value) == f"{far}: GIF file is truncated or corrupt; re-download or re-export it"
    latin1 = tmp_path / "latin1.gif"
    Image.open(tmp_path / "frame.gif").convert("RGB").save(latin1, comment=b"\xa9 2005 M\xfcller")
    np.testing.assert_array_equal(load_image(latin1), next(iter(open_frames(latin1))).image)
    frames = [Image.new("RGB", (32, 24), (v, v, v)) for v in (10, 200)]
    frames[0].save(tmp_path / "moving.jpg", format="GIF", save_all=True, append_images=frames[1:], duration=100)
    assert _video_path_of(tmp_path / "moving.jpg", warn=False) == tmp_path / "moving.jpg"
    assert len(list(open_frames(tmp_path / "moving.jpg"))) == 2
    data = (tmp_path / "moving.jpg").read_bytes()  # (cut: `wbcap run` read its last frame in part without a word)
    (tmp_path / "cut.gif").write_bytes(data[: len(data) - 3])
    from wbcap.io.images import _animated  # (cut after its second frame began: still animated, a break-it trial)

    assert _animated(data[: len(data) - 3]) and not _animated((tmp_path / "frame.gif").read_bytes())
    caplog.clear()
    with caplog.at_level("WARNING", logger="wbcap.io.video_probe"):
        assert len(list(open_frames(tmp_path / "cut.gif"))) == 2
    assert caplog.messages == [f"{tmp_path / 'cut.gif'}: the GIF is cut short (no trailer at its end): its last frame "
                               "may be partly decoded; re-download or re-export it"], caplog.messages
    os.mkfifo(tmp_path / "pipe.jpg")  # (a pipe named as a photo: looked at, not waited on; a review)
    assert _video_path_of(tmp_path / "pipe.jpg", warn=False) is None


def test_a_folder_names_the_pictures_it_skips(tmp_path: Path, caplog) -> None:
    """JPEG XL or raw files in a folder input are skipped (wbcap reads none of them) with one
    warning naming them; other files (notes, box files) and hidden ones are skipped quietly.
    HEIC / HEIF photos (iPhones' and cameras' ``.hif``) are read (they were skipped)."""
    for name in ["a1.jpg", "pal.JXL", "IMG_2.DNG", "c.cr3", "d.psd", "e.CR2", "boxes.json", ".x.jxl"]:
        (tmp_path / name).write_bytes(b"x")
    with caplog.at_level("WARNING", logger="wbcap.io.images"):
        assert [p.name for p in iter_image_paths(tmp_path)] == ["a1.jpg"]
    (record,) = caplog.records
    assert record.getMessage().startswith(f"{tmp_path}: skipped c.cr3, d.psd, e.CR2 and 2 more: pictures of a kind "
                                          "wbcap does not read (it reads .avif .bmp .dib .gif .heic .heif .hif .jfif "
                                          ".jp2 .jpe .jpeg .jpg"), record.getMessage()
    assert record.getMessage().endswith("; convert them to JPEG or PNG")
    caplog.clear()
    (tmp_path / "clip.MP4").write_bytes(b"x")  # (a video beside the pictures: said, a new user's trial)
    with caplog.at_level("WARNING", logger="wbcap.io.images"):
        assert [p.name for p in iter_image_paths(tmp_path)] == ["a1.jpg"]
    assert caplog.records[-1].getMessage() == (f"{tmp_path}: skipped clip.MP4: videos are not read in a folder of "
                                               "pictures (`wbcap run VIDEO` reads one)")
    caplog.clear()
    (tmp_path / "v.ogv").write_bytes(b"x")
    with caplog.at_level("WARNING", logger="wbcap.io.images"):  # (a pattern's too, .ogv among the videos)
        assert [p.name for p in iter_image_paths(str(tmp_path / "[av]*"))] == ["a1.jpg"]
    assert caplog.records[-1].getMessage() == (f"{tmp_path / '[av]*'}: skipped v.ogv: videos are not read in a folder "
                                               "of pictures (`wbcap run VIDEO` reads one)")
    (tmp_path / "clip.MP4").unlink()
    (tmp_path / "v.ogv").unlink()
    caplog.clear()
    for name in ["pal.JXL", "IMG_2.DNG", "c.cr3", "d.psd", "e.CR2"]:
        (tmp_path / name).unlink()
    for name in ["IMG_3.HEIC", "f.heif", "g.HIF"]:
        (tmp_path / name).write_bytes(b"x")
    assert [p.name for p in iter_image_paths(tmp_path, warn=False)] == ["a1.jpg", "f.heif", "g.HIF", "IMG_3.HEIC"]
    for name in ["IMG_3.HEIC", "f.heif", "g.HIF"]:
        (tmp_path / name).unlink()
    with caplog.at_level("WARNING", logger="wbcap.io.images"):
        iter_image_paths(tmp_path)
    assert caplog.records == []


def test_a_named_pipe_is_refused_not_waited_on(tmp_path: Path) -> None:
    """A user trial: `wbcap image` of a FIFO waited forever for a writer."""
    import os

    os.mkfifo(tmp_path / "photo.jpg")
    assert image_size(tmp_path / "photo.jpg") is None  # (`wbcap image` asks its size first: Pillow waited there)
    with pytest.raises(InputError) as err:
        load_image(tmp_path / "photo.jpg")
    assert str(err.value) == (f"{tmp_path / 'photo.jpg'}: is not a regular file (a pipe or a device); save the image "
                              "to a file and pass that")


def test_a_folder_names_subfolders_whose_images_lie_deeper_and_its_hidden_pictures(tmp_path, caplog):
    """A batch trial: `a/b/deep.jpg` was skipped without a word (only a folder's direct subfolders
    were looked at), and so were `.hidden.jpg` and `..x.jpg`; macOS's `._` files are left out silently."""
    import logging

    from wbcap.io.images import iter_image_paths

    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "deep.jpg").write_bytes(b"x")
    (tmp_path / ".cache" / "c").mkdir(parents=True)
    (tmp_path / ".cache" / "c" / "thumb.jpg").write_bytes(b"x")  # (a hidden folder's: not said)
    for name in ("top.jpg", ".hidden.jpg", "..x.jpg", "._top.jpg", ".jpg"):
        (tmp_path / name).write_bytes(b"x")
    with caplog.at_level(logging.WARNING, logger="wbcap.io.images"):
        assert [p.name for p in iter_image_paths([tmp_path])] == ["top.jpg"]
    assert sorted(r.getMessage() for r in caplog.records) == sorted([
        f"{tmp_path}: skipped the images in its subfolder a (a folder is read without its subfolders; "
        f"'{tmp_path}/**' reads them all)",
        f"{tmp_path}: skipped the hidden pictures ..x.jpg, .hidden.jpg, .jpg (names starting with '.'; name one to "
        "read it)"])
    only_deep = tmp_path / "a"
    with pytest.raises(InputError) as info:
        iter_image_paths([only_deep], warn=False)
    assert str(info.value).endswith(f"a folder is read without its subfolders, and b holds some: name it, or all with "
                                    f"a pattern such as '{only_deep}/**'"), str(info.value)


@pytest.mark.parametrize("fmt", ["TIFF", "WEBP", "BMP", "PNG"])
def test_a_cut_tiff_webp_bmp_or_png_is_said_damaged_in_one_line_without_the_decoders_own(tmp_path, capfd, fmt):
    """A batch trial: a cut TIFF or WebP was told to pass a TIFF or WebP, and libpng's and
    OpenCV's own lines went to stderr beside wbcap's."""
    from PIL import Image

    from wbcap.io.images import load_image

    whole = tmp_path / f"whole.{fmt.lower()}"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (300, 400, 3), dtype=np.uint8)).save(whole, format=fmt)
    cut = tmp_path / f"cut.{fmt.lower()}"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    capfd.readouterr()
    with pytest.raises(InputError) as info:
        load_image(cut)
    kind = {"TIFF": "TIFF", "WEBP": "WebP", "BMP": "BMP", "PNG": "image"}[fmt]
    assert str(info.value).startswith(f"{cut}: {kind} file is truncated or corrupt"), str(info.value)
    assert str(info.value).endswith("re-download or re-export it")
    assert capfd.readouterr() == ("", "")


@pytest.mark.parametrize("damaged", ["refuse", "warn"])
def test_a_png_whose_pixel_data_fails_its_crc_is_said_damaged_without_libpngs_line(tmp_path, capfd, damaged):
    """A frame of an image sequence with bytes changed inside its pixel data (its end intact): libpng
    printed "libpng error: IDAT: CRC error" and wbcap called it an image it cannot decode, "pass a
    JPEG, PNG, ..." (an HCI researcher's trial). Now the damaged chunk is named, in one line; a bad
    CRC in an ancillary chunk (text) is libpng's to drop, and the picture decodes as it was."""
    import struct
    import zlib

    from PIL import Image

    from wbcap.io.images import load_image

    pixels = np.random.default_rng(0).integers(0, 255, (60, 80, 3), dtype=np.uint8)
    whole = tmp_path / "frame_0001.png"
    Image.fromarray(pixels).save(whole)
    data = bytearray(whole.read_bytes())
    at = data.index(b"IDAT") - 4
    data[at + 40:at + 48] = bytes(8)  # (inside the chunk's data: its length and the file's end intact)
    bad = tmp_path / "frame_0002.png"
    bad.write_bytes(bytes(data))
    capfd.readouterr()
    with pytest.raises(InputError) as info:
        load_image(bad, damaged=damaged)
    assert str(info.value) == (f"{bad}: image file is truncated or corrupt (its PNG IDAT chunk at byte {at} fails its "
                               "CRC check); re-download or re-export it")
    assert capfd.readouterr() == ("", "")
    text = b"Comment\x00made by hand"
    chunk = struct.pack(">I", len(text)) + b"tEXt" + text + struct.pack(">I", zlib.crc32(b"tEXt" + text) ^ 1)
    original = whole.read_bytes()
    noted = tmp_path / "frame_0003.png"
    noted.write_bytes(original[:at] + chunk + original[at:])
    np.testing.assert_array_equal(load_image(noted, damaged=damaged), pixels)


def test_decoding_in_threads_leaves_opencvs_log_level_as_it_was(tmp_path):
    """A break-it review: each decode saved and restored OpenCV's process-wide log level, so a
    thread pool's decodes left it silent for good."""
    from concurrent.futures import ThreadPoolExecutor

    from wbcap.io.images import _quiet_opencv, load_image

    path = tmp_path / "a.png"
    cv2.imwrite(str(path), np.full((40, 30, 3), 7, np.uint8))
    get, put = _quiet_opencv._functions(cv2)
    level = get()
    try:
        put(2)  # (ERROR: not the default, so a level "restored" from another thread's silence shows)
        with ThreadPoolExecutor(8) as pool:
            assert all(img.shape == (40, 30, 3) for img in pool.map(load_image, [path] * 64))
        assert get() == 2
    finally:
        put(level)


def test_a_display_p3_photo_is_read_in_srgb(tmp_path: Path) -> None:
    """A photo tagged with a Display P3 ICC profile (as iPhones and many cameras tag theirs; the
    profile made from P3's primaries by wbcap.testing.icc) is read in sRGB, its colours converted
    as the two spaces' matrices give them (to 1 level), in PNG, JPEG and HEIC; an sRGB-tagged or
    untagged one, one with a damaged profile and a dataset's read (srgb=False, as upstream's
    OpenCV) keep the stored values (read as sRGB, P3's values came out duller in every output)."""
    import pillow_heif

    from wbcap.testing.icc import DISPLAY_P3, SRGB, rgb_matrix_profile, rgb_to_xyz, srgb_decode, srgb_encode

    stored = np.zeros((16, 24, 3), np.uint8)
    for k, colour in enumerate([(200, 100, 50), (30, 180, 90), (128, 128, 128), (10, 20, 240)]):
        stored[:, 6 * k:6 * k + 6] = colour
    p3_to_srgb = np.linalg.inv(rgb_to_xyz(SRGB)) @ rgb_to_xyz(DISPLAY_P3)
    want = np.round(srgb_encode(srgb_decode(stored / 255) @ p3_to_srgb.T) * 255)
    assert np.abs(want - stored).max() > 15  # (the conversion shows)
    p3 = rgb_matrix_profile(DISPLAY_P3, "Display P3")
    Image.fromarray(stored).save(tmp_path / "p3.png", icc_profile=p3)
    Image.fromarray(stored).save(tmp_path / "p3.jpg", icc_profile=p3, quality=100, subsampling=0)
    pillow_heif.from_pillow(Image.fromarray(stored)).save(tmp_path / "p3.heic", quality=-1, icc_profile=p3)
    assert np.abs(load_image(tmp_path / "p3.png").astype(int) - want).max() <= 1
    assert load_image(tmp_path / "p3.png").flags.writeable  # (as every other picture: an edit failed on it, a review)
    assert np.abs(load_image(tmp_path / "p3.jpg").astype(int) - want).mean() < 1.5
    assert np.abs(load_image(tmp_path / "p3.heic").astype(int) - want).mean() < 1.5
    assert np.array_equal(load_image(tmp_path / "p3.png", srgb=False), stored)
    for name, profile in (("srgb.png", rgb_matrix_profile(SRGB, "sRGB IEC61966-2.1")), ("none.png", None),
                          ("damaged.png", p3[:200]), ("renamed.png", rgb_matrix_profile(SRGB, "Camera RGB"))):
        Image.fromarray(stored).save(tmp_path / name, **({} if profile is None else {"icc_profile": profile}))
        assert np.array_equal(load_image(tmp_path / name), stored), name
    tall = np.random.default_rng(0).integers(0, 256, (1100, 5, 3), dtype=np.uint8)  # (converted in strips: the same)
    Image.fromarray(tall).save(tmp_path / "tall.png", icc_profile=p3)
    from PIL import ImageCms

    whole = ImageCms.profileToProfile(Image.fromarray(tall), ImageCms.ImageCmsProfile(io.BytesIO(p3)),
                                      ImageCms.createProfile("sRGB"), renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC)
    assert np.array_equal(load_image(tmp_path / "tall.png"), np.asarray(whole))
    linear = rgb_matrix_profile(SRGB, "Linear sRGB", gamma=1.0)  # (named sRGB, not sRGB's values: converted)
    Image.fromarray(stored).save(tmp_path / "linear.png", icc_profile=linear)
    want = np.round(srgb_encode(stored / 255) * 255)
    assert np.abs(load_image(tmp_path / "linear.png").astype(int) - want).max() <= 1
