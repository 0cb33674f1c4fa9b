"""Image files are decoded completely or rejected with their name (issue: truncated JPEGs were
returned full size with the missing rows grey)."""

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from detzoo.data import CorruptImageError, load_image, read_image_file
from detzoo.data.image_file import stream_problem


def _photo(height: int = 48, width: int = 64) -> np.ndarray:
    """A smooth RGB image: JPEG keeps its scan data long enough to cut."""
    yy, xx = np.mgrid[:height, :width]
    return np.stack([xx * 255 // width, yy * 255 // height, (xx + yy) % 256], -1).astype(np.uint8)


def _encode(pixels: np.ndarray, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, fmt, **options)
    return buffer.getvalue()


def _cut(data: bytes, fraction: float) -> bytes:
    return data[: int(len(data) * fraction)]


def _exif_rotated_jpeg() -> bytes:
    image = Image.fromarray(_photo())
    exif = image.getexif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to display
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", exif=exif.tobytes())
    return buffer.getvalue()


WHOLE_FILES = {
    "baseline.jpg": lambda: _encode(_photo(), "JPEG", quality=90),
    "progressive.jpg": lambda: _encode(_photo(), "JPEG", quality=90, progressive=True),
    "restart_markers.jpg": lambda: _encode(_photo(), "JPEG", quality=90, restart_marker_rows=1),
    "exif.jpg": _exif_rotated_jpeg,
    "image.png": lambda: _encode(_photo(), "PNG"),
    "image.bmp": lambda: _encode(_photo(), "BMP"),
    "image.webp": lambda: _encode(_photo(), "WEBP", lossless=True),
}


@pytest.mark.parametrize("name", sorted(WHOLE_FILES))
def test_whole_files_decode_as_opencv_reads_them(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(WHOLE_FILES[name]())
    expected = cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    image = read_image_file(str(path))
    assert image.dtype == np.uint8 and image.shape == expected.shape
    np.testing.assert_array_equal(image, expected)
    if name == "exif.jpg":  # EXIF orientation applied, as Detectron2 and OpenCV do
        assert image.shape[:2] == (64, 48)


@pytest.mark.parametrize("name", ["baseline.jpg", "progressive.jpg", "image.png"])
def test_every_cut_of_a_jpeg_or_png_is_caught(name):
    """Every proper prefix of the file is incomplete: each must be reported."""
    data = WHOLE_FILES[name]()
    assert stream_problem(data) is None
    missed = [cut for cut in range(len(data)) if stream_problem(data[:cut]) is None]
    assert missed == []


def test_bytes_after_the_end_of_image_are_allowed(tmp_path):
    """Cameras and editors append data after a JPEG's EOI marker; the image is whole."""
    path = tmp_path / "trailer.jpg"
    path.write_bytes(WHOLE_FILES["baseline.jpg"]() + b"\x00trailing metadata")
    assert read_image_file(str(path)).shape == (48, 64, 3)


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("cut.jpg", lambda: _cut(WHOLE_FILES["baseline.jpg"](), 0.55), "truncated"),
        ("cut.png", lambda: _cut(WHOLE_FILES["image.png"](), 0.9), "truncated"),
        ("cut.bmp", lambda: _cut(WHOLE_FILES["image.bmp"](), 0.5), "cannot be decoded completely"),
        ("empty.jpg", lambda: b"", "empty"),
        ("text.jpg", lambda: b"this is not an image", "cannot be decoded"),
    ],
)
def test_corrupt_files_raise_naming_the_file_and_image_id(tmp_path, name, content, reason):
    path = tmp_path / name
    path.write_bytes(content())
    with pytest.raises(CorruptImageError, match=reason) as caught:
        load_image(str(path), 48, 64, image_id=17)
    message = str(caught.value)
    assert str(path) in message and "image id 17" in message
    assert caught.value.path == str(path) and caught.value.image_id == 17


def test_a_jpeg_cut_at_55_percent_is_not_returned_grey(tmp_path):
    """The reported case: OpenCV's imread returns such a file full size, the rest grey (128)."""
    data = _encode(_photo(240, 320), "JPEG", quality=90)
    path = tmp_path / "cut.jpg"
    path.write_bytes(_cut(data, 0.55))
    grey = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert grey is not None and (grey == 128).all(axis=2).mean() > 0.2  # what OpenCV gives
    with pytest.raises(CorruptImageError, match=r"cut\.jpg \(image id 3\) is truncated"):
        load_image(str(path), 240, 320, image_id=3)


def test_missing_file_and_wrong_size_keep_their_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.jpg"):
        load_image(str(tmp_path / "missing.jpg"), 48, 64)
    path = tmp_path / "image.png"
    path.write_bytes(WHOLE_FILES["image.png"]())
    with pytest.raises(
        ValueError, match=r"48x64 \(HxW\) on disk but the annotations \(image id 1\) say 40x64"
    ):
        load_image(str(path), 40, 64, image_id=1)
