"""The weight download path, for real, against an HTTP server on 127.0.0.1 started by the test."""

import hashlib
import multiprocessing
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from detzoo.zoo.download import ChecksumError, DownloadError, cached_path, fetch

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB
SHA = hashlib.sha256(PAYLOAD).hexdigest()
MD5 = hashlib.md5(PAYLOAD).hexdigest()


class _Server:
    """Serves PAYLOAD at /w/<name>; ``cut_first`` requests stop half way; counts requests."""

    def __init__(self):
        self.requests: list[tuple[str, str | None]] = []
        self.cut_first = 0
        self.body = PAYLOAD
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                server.requests.append((self.path, self.headers.get("Range")))
                if not self.path.startswith("/w/"):
                    self.send_error(404, "Not Found")
                    return
                start = 0
                if rng := self.headers.get("Range"):
                    start = int(rng.split("=")[1].split("-")[0])
                body = server.body[start:]
                self.send_response(206 if start else 200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if server.cut_first > 0:
                    server.cut_first -= 1
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.connection.shutdown(2)
                    return
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = _Server()
    yield s
    s.close()


def test_first_download_then_cache_hit_without_network(server, tmp_path):
    url = f"{server.url}/w/model_final_{MD5[:6]}.pkl"
    path = fetch(url, md5_prefix=MD5[:6], directory=tmp_path, progress=False)
    assert path == cached_path(url, tmp_path) and path.read_bytes() == PAYLOAD
    assert not list(path.parent.glob("*.part"))
    server.close()  # offline from now on
    again = fetch(url, md5_prefix=MD5[:6], directory=tmp_path, progress=False)
    assert again == path
    assert len(server.requests) == 1


def test_broken_transfer_is_resumed(server, tmp_path):
    server.cut_first = 1
    path = fetch(f"{server.url}/w/a.safetensors", sha256=SHA, directory=tmp_path, progress=False)
    assert path.read_bytes() == PAYLOAD
    assert len(server.requests) == 2
    assert server.requests[1][1] is not None and server.requests[1][1].startswith("bytes=")


def test_checksum_mismatch_deletes_the_file_and_names_it(server, tmp_path):
    url = f"{server.url}/w/bad.safetensors"
    with pytest.raises(ChecksumError, match=r"bad\.safetensors.*sha256 is .*expected 0+") as info:
        fetch(url, sha256="0" * 64, directory=tmp_path, progress=False)
    assert SHA in str(info.value)
    assert not (tmp_path / "weights" / "bad.safetensors.part").exists()
    assert not cached_path(url, tmp_path).exists()


def test_404_is_a_clear_error(server, tmp_path):
    with pytest.raises(DownloadError, match="HTTP 404"):
        fetch(f"{server.url}/missing/x.pkl", directory=tmp_path, progress=False)


def test_local_path_and_file_url(tmp_path):
    f = tmp_path / "local.pth"
    f.write_bytes(PAYLOAD)
    assert fetch(str(f), sha256=SHA) == f
    assert fetch(f.as_uri(), sha256=SHA) == f
    with pytest.raises(ChecksumError, match="local.pth"):
        fetch(f.as_uri(), md5_prefix="ffffff")
    with pytest.raises(FileNotFoundError, match="nothere"):
        fetch(str(tmp_path / "nothere.pth"))


def _fetch_in_process(url: str, directory: str, queue) -> None:
    queue.put(str(fetch(url, sha256=SHA, directory=Path(directory), progress=False)))


def test_concurrent_processes_share_one_good_file(server, tmp_path):
    url = f"{server.url}/w/shared.safetensors"
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [
        ctx.Process(target=_fetch_in_process, args=(url, str(tmp_path), queue)) for _ in range(2)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    paths = {queue.get(timeout=5) for _ in procs}
    assert len(paths) == 1
    assert Path(paths.pop()).read_bytes() == PAYLOAD
    assert len(server.requests) == 1  # the second process found the finished file
