"""Reading an image file completely, or failing with its name.

OpenCV's ``imread`` returns a truncated JPEG at full size with the missing rows grey (128) and
only prints libjpeg's "Premature end of JPEG file", without the file's name; Detectron2's reader
(PIL) raises "image file is truncated". detzoo decodes with OpenCV (faster than PIL, and it
applies the EXIF orientation as Detectron2 does) after checking that the encoded stream is whole:
a JPEG must reach its end-of-image marker, a PNG its ``IEND`` chunk; other formats are loaded
once by PIL, which raises on a truncated file. Every failure is a :class:`CorruptImageError`
naming the file (and the dataset's image id).
"""

from __future__ import annotations

import io
import re

import cv2
import numpy as np
from PIL import Image

_JPEG_SOI = b"\xff\xd8"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# In entropy-coded JPEG data 0xFF is followed by 0x00 (a stuffed byte), RST0-7 (0xD0-0xD7) or
# more 0xFF fill bytes; anything else is the next marker.
_NEXT_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
_STANDALONE_MARKERS = {0x01, *range(0xD0, 0xD8)}  # TEM, RST0-7: no length field


class CorruptImageError(OSError):
    """An image file that cannot be decoded completely.

    Attributes:
        path: the file.
        image_id: the dataset's id of the image, or None outside a dataset.
        reason: what is wrong, in words.
    """

    def __init__(self, path: str, reason: str, image_id: int | None = None) -> None:
        self.path, self.reason, self.image_id = str(path), reason, image_id
        where = f"image file {path}" + (f" (image id {image_id})" if image_id is not None else "")
        super().__init__(
            f"{where} {reason}; replace the file, or remove the image from the annotations "
            "(DetectionDataModule(skip_corrupt_images=True) skips such images and counts them)"
        )

    def __reduce__(self):  # picklable across DataLoader worker processes
        return type(self), (self.path, self.reason, self.image_id)


def _jpeg_truncation(data: bytes) -> str | None:
    """Why the JPEG stream ``data`` (starting with SOI) is incomplete, or None when it reaches its
    end-of-image marker. Walks the marker segments; entropy-coded data is skipped with one regex
    search per scan."""
    pos, size = 2, len(data)
    while True:
        while pos < size and data[pos] == 0xFF and pos + 1 < size and data[pos + 1] == 0xFF:
            pos += 1  # fill bytes before a marker
        if pos + 2 > size:
            return "is truncated (it ends before the JPEG end-of-image marker)"
        if data[pos] != 0xFF:
            return f"is corrupt (no JPEG marker at byte {pos})"
        marker = data[pos + 1]
        pos += 2
        if marker == 0xD9:  # EOI
            return None
        if marker in _STANDALONE_MARKERS:
            continue
        if pos + 2 > size:
            return "is truncated (it ends inside a JPEG segment header)"
        end = pos + int.from_bytes(data[pos : pos + 2], "big")
        if end > size:
            return "is truncated (it ends inside a JPEG segment)"
        pos = end
        if marker == 0xDA:  # SOS: skip the scan's entropy-coded data
            found = _NEXT_MARKER.search(data, pos)
            if found is None:
                return "is truncated (it ends inside the JPEG image data)"
            pos = found.start()


def _png_truncation(data: bytes) -> str | None:
    """Why the PNG stream ``data`` is incomplete, or None when it reaches its ``IEND`` chunk."""
    pos, size = len(_PNG_SIGNATURE), len(data)
    while pos + 8 <= size:
        length = int.from_bytes(data[pos : pos + 4], "big")
        chunk_type = data[pos + 4 : pos + 8]
        pos += 12 + length  # length, type, data, CRC
        if pos > size:
            return f"is truncated (it ends inside the PNG {chunk_type.decode('latin-1')} chunk)"
        if chunk_type == b"IEND":
            return None
    return "is truncated (it ends before the PNG IEND chunk)"


def _other_format_truncation(data: bytes) -> str | None:
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
    except (OSError, SyntaxError, ValueError) as error:  # PIL's errors for bad files
        return f"cannot be decoded completely ({error})"
    return None


def stream_problem(data: bytes) -> str | None:
    """Why the encoded image ``data`` is incomplete or corrupt, or None when it is whole."""
    if len(data) == 0:
        return "is empty (0 bytes)"
    if data.startswith(_JPEG_SOI):
        return _jpeg_truncation(data)
    if data.startswith(_PNG_SIGNATURE):
        return _png_truncation(data)
    return _other_format_truncation(data)


def read_image_file(path: str, image_id: int | None = None) -> np.ndarray:
    """uint8 ``[H, W, 3]`` RGB pixels of the image file at ``path``, EXIF orientation applied.

    Raises:
        FileNotFoundError: the file does not exist.
        CorruptImageError: the file is empty, truncated or not a decodable image.
    """
    try:
        with open(path, "rb") as file:
            data = file.read()
    except FileNotFoundError:
        raise FileNotFoundError(
            f"image file {path}"
            + (f" (image id {image_id})" if image_id is not None else "")
            + " does not exist; check the image root directory"
        ) from None
    problem = stream_problem(data)
    if problem is not None:
        raise CorruptImageError(path, problem, image_id)
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise CorruptImageError(path, "cannot be decoded (corrupt or not an image)", image_id)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
