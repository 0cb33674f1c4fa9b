"""Fetching weight files into a local cache: once, atomically, verified, resumable, offline-friendly.

``fetch(url, sha256=...)`` returns a local path:

- a local path or a ``file://`` URL is used where it lies (verified when a checksum is given);
- an ``http(s)://`` URL is downloaded into ``$DETZOO_CACHE`` (default ``~/.cache/detzoo``) under
  ``weights/<file name>``: bytes go to ``<name>.part`` (resumed with an HTTP Range request after a
  broken transfer, retried a few times), the checksum is checked, and only then is the file renamed
  into place — so the cache never holds a partial or corrupt file under its final name. A file lock
  makes concurrent processes wait for one download instead of racing;
- a cache hit needs no network (offline use).

Checksums: ``sha256`` (full hex digest) for detzoo's own weights; ``md5_prefix`` for Detectron2's
model zoo, whose file names carry the first hex digits of the file's md5 (``model_final_f10217.pkl``).
"""

from __future__ import annotations

import fcntl
import hashlib
import http.client
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from contextlib import contextmanager
from pathlib import Path

from tqdm import tqdm

CHUNK = 1 << 20
RETRIES = 3
RETRY_BACKOFF_S = 0.5  # waits 0.5 s, 1 s, ... between attempts


class ChecksumError(ValueError):
    """A downloaded or local file does not have the expected checksum."""


class DownloadError(OSError):
    """A weight file could not be fetched."""


def cache_dir() -> Path:
    """``$DETZOO_CACHE`` or ``~/.cache/detzoo``."""
    return Path(os.environ.get("DETZOO_CACHE", Path.home() / ".cache" / "detzoo")).expanduser()


def file_digest(path: Path, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with path.open("rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def verify(path: Path, sha256: str | None = None, md5_prefix: str | None = None) -> None:
    """Raises :class:`ChecksumError` (naming the file, expected vs actual) on a mismatch."""
    if sha256:
        actual = file_digest(path, "sha256")
        if actual != sha256.lower():
            raise ChecksumError(f"{path}: sha256 is {actual}, expected {sha256.lower()}")
    if md5_prefix:
        actual = file_digest(path, "md5")
        if not actual.startswith(md5_prefix.lower()):
            raise ChecksumError(
                f"{path}: md5 is {actual}, expected it to start with {md5_prefix.lower()}"
            )


def cached_path(url: str, directory: Path | None = None) -> Path:
    """Where ``url`` is (or would be) cached."""
    name = Path(urllib.parse.urlparse(url).path).name
    if not name:
        raise DownloadError(f"cannot derive a file name from URL {url!r}")
    return (directory or cache_dir()) / "weights" / name


def local_path(url: str) -> Path | None:
    """The file a local path or ``file://`` URL names; ``None`` for any other URL."""
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme == "file":
        return Path(urllib.request.url2pathname(parsed.path))
    if parsed.scheme == "":
        return Path(url).expanduser()
    return None


def fetch(
    url: str,
    sha256: str | None = None,
    md5_prefix: str | None = None,
    directory: Path | None = None,
    progress: bool = True,
) -> Path:
    """A verified local file for ``url`` (a local path, ``file://`` or ``http(s)://`` URL)."""
    path = local_path(url)
    if path is not None:
        if not path.is_file():
            raise FileNotFoundError(f"weights file {path} does not exist")
        verify(path, sha256, md5_prefix)
        return path
    if urllib.parse.urlparse(url).scheme not in ("http", "https"):
        raise DownloadError(
            f"unsupported URL scheme in {url!r}: use a path, file://, http:// or https://"
        )

    target = cached_path(url, directory)
    if target.is_file():  # a cache hit needs no lock (and works in a read-only cache)
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with _locked(target.with_name(target.name + ".lock")):
        if target.is_file():  # completed by us earlier or by another process while we waited
            return target
        part = target.with_name(target.name + ".part")
        _download_with_retries(url, part, progress)
        try:
            verify(part, sha256, md5_prefix)
        except ChecksumError as err:
            part.unlink(missing_ok=True)
            raise ChecksumError(f"downloaded {url}: {err}; the bad file was deleted") from err
        os.replace(part, target)
    return target


@contextmanager
def _locked(lock_path: Path):
    with lock_path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _download_with_retries(url: str, part: Path, progress: bool) -> None:
    last: Exception | None = None
    for attempt in range(RETRIES):
        try:
            _download(url, part, progress)
            return
        except urllib.error.HTTPError as err:
            if err.code in (404, 403, 401, 410):
                raise DownloadError(
                    f"{url}: HTTP {err.code} {err.reason}; check the URL in the zoo index"
                ) from err
            last = err
            if err.code == 416:  # the partial file is no shorter than the file: start over
                part.unlink(missing_ok=True)
                continue
        except (urllib.error.URLError, http.client.HTTPException, OSError) as err:
            last = err
        if attempt + 1 < RETRIES:
            time.sleep(RETRY_BACKOFF_S * 2**attempt)
    raise DownloadError(
        f"could not download {url} after {RETRIES} attempts ({last}). If this machine is offline, "
        f"download the file elsewhere and pass its path (weights=...) or put it at {part.with_suffix('')}"
    ) from last


class _IncompleteError(OSError):
    pass


def _download(url: str, part: Path, progress: bool) -> None:
    """Appends to ``part`` from where it stops (HTTP Range), until the advertised size."""
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    with urllib.request.urlopen(request, timeout=30) as response:
        if have and response.status != 206:  # server ignored the range: start over
            have = 0
        length = response.headers.get("Content-Length")
        total = have + int(length) if length is not None else None
        mode = "ab" if have else "wb"
        with (
            part.open(mode) as out,
            tqdm(
                total=total,
                initial=have,
                unit="B",
                unit_scale=True,
                disable=not progress,
                desc=part.stem,
            ) as bar,
        ):
            while block := response.read(CHUNK):
                out.write(block)
                bar.update(len(block))
    if total is not None and part.stat().st_size < total:
        raise _IncompleteError(
            f"transfer of {url} stopped at {part.stat().st_size} of {total} bytes"
        )
