"""Image listing, decoding to 8-bit RGB, and skipping unreadable files (ghostkit/data/images.py)."""

import io
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from ghostkit.data.images import (
    IMG_EXTENSIONS,
    SkippedFilesWarning,
    filter_readable,
    list_images,
    read_image,
)
from ghostkit.errors import GhostkitError


def noise_image(size: int = 64, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))


def write_truncated(path: Path, fmt: str) -> Path:
    """A valid file of `fmt`, cut in half."""
    buf = io.BytesIO()
    noise_image().save(buf, format=fmt)
    data = buf.getvalue()
    path.write_bytes(data[: len(data) // 2])
    return path


def write_bad_files(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    bad = [write_truncated(folder / "cut.jpg", "JPEG"), write_truncated(folder / "cut.png", "PNG")]
    junk = folder / "junk.png"
    junk.write_bytes(np.random.default_rng(1).integers(0, 256, 500, dtype=np.uint8).tobytes())
    return [*bad, junk]


def test_truncated_images_are_not_allowed_globally():
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_list_images_sorted_filtered_and_non_recursive(tmp_path):
    for name in ["b.PNG", "a.jpg", "c.JpEg", "notes.txt", ".hidden.jpg", "._a.jpg"]:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "d.png").write_bytes(b"x")
    assert [p.name for p in list_images(tmp_path)] == ["a.jpg", "b.PNG", "c.JpEg"]
    assert [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path, recursive=True)] == [
        "a.jpg",
        "b.PNG",
        "c.JpEg",
        "sub/d.png",
    ]
    assert ".png" in IMG_EXTENSIONS and ".jpg" in IMG_EXTENSIONS


def test_list_images_missing_folder(tmp_path):
    with pytest.raises(GhostkitError, match="nope"):
        list_images(tmp_path / "nope")


def test_read_image_rgb_roundtrip(tmp_path):
    src = noise_image(32)
    src.save(tmp_path / "a.png")
    img = read_image(tmp_path / "a.png")
    assert img.mode == "RGB" and img.size == (32, 32)
    np.testing.assert_array_equal(np.asarray(img), np.asarray(src))


def test_read_image_grayscale(tmp_path):
    Image.fromarray(np.full((5, 7), 77, dtype=np.uint8)).save(tmp_path / "g.png")
    arr = np.asarray(read_image(tmp_path / "g.png"))
    assert arr.shape == (5, 7, 3) and arr.dtype == np.uint8
    assert (arr == 77).all()


def test_read_image_alpha_is_composited_on_white(tmp_path):
    rgba = np.zeros((2, 3, 4), dtype=np.uint8)
    rgba[0, 0] = (255, 0, 0, 255)  # opaque red stays red
    rgba[0, 1] = (255, 0, 0, 0)  # fully transparent becomes white
    rgba[0, 2] = (0, 0, 0, 128)  # half-transparent black becomes mid grey
    Image.fromarray(rgba).save(tmp_path / "a.png")
    arr = np.asarray(read_image(tmp_path / "a.png")).astype(int)
    assert arr.shape == (2, 3, 3)
    assert tuple(arr[0, 0]) == (255, 0, 0)
    assert tuple(arr[0, 1]) == (255, 255, 255)
    assert np.all(np.abs(arr[0, 2] - 127) <= 1)

    la = np.zeros((1, 2, 2), dtype=np.uint8)
    la[0, 0] = (10, 255)
    la[0, 1] = (10, 0)
    Image.fromarray(la).save(tmp_path / "la.png")
    arr = np.asarray(read_image(tmp_path / "la.png"))
    assert tuple(arr[0, 0]) == (10, 10, 10) and tuple(arr[0, 1]) == (255, 255, 255)


def test_read_image_palette_with_and_without_transparency(tmp_path):
    pal = Image.new("P", (4, 1))
    pal.putpalette([0, 0, 255, 0, 255, 0] + [0] * 762)  # index 0 blue, 1 green
    pal.putdata([0, 1, 0, 1])
    pal.save(tmp_path / "p.png")
    arr = np.asarray(read_image(tmp_path / "p.png"))
    assert arr.shape == (1, 4, 3)
    assert tuple(arr[0, 0]) == (0, 0, 255) and tuple(arr[0, 1]) == (0, 255, 0)

    pal.save(tmp_path / "pt.png", transparency=0)  # index 0 transparent → white
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "palette images with transparency" warning from PIL
        arr = np.asarray(read_image(tmp_path / "pt.png"))
    assert tuple(arr[0, 0]) == (255, 255, 255) and tuple(arr[0, 1]) == (0, 255, 0)


def test_read_image_16bit_int_and_float(tmp_path):
    a16 = np.array([[0, 32896, 65535]], dtype=np.uint16)
    Image.fromarray(a16).save(tmp_path / "i16.png")
    assert Image.open(tmp_path / "i16.png").mode in ("I;16", "I")
    arr = np.asarray(read_image(tmp_path / "i16.png"))
    assert arr.shape == (1, 3, 3) and arr.dtype == np.uint8
    assert list(arr[0, :, 0]) == [0, 128, 255]

    Image.fromarray(a16.astype(np.int32)).save(tmp_path / "i32.tif")
    assert Image.open(tmp_path / "i32.tif").mode == "I"
    assert list(np.asarray(read_image(tmp_path / "i32.tif"))[0, :, 1]) == [0, 128, 255]

    Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32)).save(tmp_path / "f.tif")
    assert Image.open(tmp_path / "f.tif").mode == "F"
    assert list(np.asarray(read_image(tmp_path / "f.tif"))[0, :, 2]) == [0, 128, 255]


def test_read_image_cmyk(tmp_path):
    Image.new("CMYK", (6, 4), (0, 255, 255, 0)).save(tmp_path / "c.jpg", quality=100)  # magenta + yellow = red
    img = read_image(tmp_path / "c.jpg")
    assert img.mode == "RGB" and img.size == (6, 4)
    r, g, b = np.asarray(img).reshape(-1, 3).mean(0)
    assert r > 200 and g < 60 and b < 60


def test_read_image_applies_exif_orientation(tmp_path):
    img = Image.new("RGB", (40, 20), (10, 20, 30))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees to display
    img.save(tmp_path / "o.jpg", exif=exif)
    assert read_image(tmp_path / "o.jpg").size == (20, 40)
    assert read_image(tmp_path / "o.jpg", exif_transpose=False).size == (40, 20)


@pytest.mark.parametrize("fmt,name", [("JPEG", "cut.jpg"), ("PNG", "cut.png")])
def test_read_image_rejects_truncated(tmp_path, fmt, name):
    path = write_truncated(tmp_path / name, fmt)
    with pytest.raises(GhostkitError, match=rf"{name}: cannot read image \("):
        read_image(path)


def test_read_image_rejects_random_bytes_and_missing(tmp_path):
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"definitely not an image" * 10)
    with pytest.raises(GhostkitError, match=r"junk\.jpg: cannot read image"):
        read_image(junk)
    with pytest.raises(GhostkitError, match=r"missing\.png: cannot read image"):
        read_image(tmp_path / "missing.png")


def test_error_message_is_one_line(tmp_path):
    path = write_truncated(tmp_path / "cut.png", "PNG")
    with pytest.raises(GhostkitError) as info:
        read_image(path)
    assert "\n" not in str(info.value)


def test_filter_readable_one_counted_warning(tmp_path):
    good = []
    for i in range(6):
        noise_image(16, seed=i).save(tmp_path / f"ok{i}.png")
        good.append(tmp_path / f"ok{i}.png")
    bad = write_bad_files(tmp_path)
    paths = sorted(good + bad)
    with pytest.warns(SkippedFilesWarning) as record:
        ok, skipped = filter_readable(paths)
    assert len(record) == 1
    message = str(record[0].message)
    assert message.startswith(f"skipped 3 unreadable image(s) in {tmp_path}: ")
    assert all(p.name in message for p in bad)
    assert ok == sorted(good) and skipped == sorted(bad)


def test_filter_readable_lists_five_names_then_ellipsis(tmp_path):
    paths = []
    for i in range(7):
        (tmp_path / f"bad{i}.jpg").write_bytes(b"\x00" * 10)
        paths.append(tmp_path / f"bad{i}.jpg")
    with pytest.warns(SkippedFilesWarning, match=r"skipped 7 unreadable image\(s\)") as record:
        ok, skipped = filter_readable(paths, folder=tmp_path)
    message = str(record[0].message)
    assert message.endswith("bad0.jpg, bad1.jpg, bad2.jpg, bad3.jpg, bad4.jpg, ...")
    assert ok == [] and len(skipped) == 7


def test_filter_readable_no_warning_when_all_good(tmp_path):
    noise_image(8).save(tmp_path / "a.png")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ok, skipped = filter_readable([tmp_path / "a.png"])
    assert ok == [tmp_path / "a.png"] and skipped == []
    assert filter_readable([]) == ([], [])
