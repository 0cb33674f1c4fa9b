"""The weight download path, for real, against an HTTP server on 127.0.0.1 started by the test:
first download, cache hit, offline use, broken transfers resumed or retried, checksum mismatch,
404, and two processes fetching (and ``get``-ting) the same model at once."""

import hashlib
import multiprocessing
from pathlib import Path

import pytest
import torch

from detzoo.zoo import download
from detzoo.zoo.download import ChecksumError, DownloadError, cached_path, fetch

from .helpers import TINY_CONFIGS, randomised_state, write_detectron2_pkl

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB
SHA = hashlib.sha256(PAYLOAD).hexdigest()
MD5 = hashlib.md5(PAYLOAD).hexdigest()


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch):
    """Retries wait 0.5 s, 1 s, ...; not in tests."""
    monkeypatch.setattr(download, "RETRY_BACKOFF_S", 0.0)


def test_first_download_then_cache_hit_without_network(server, tmp_path):
    server.files["/w/model_final_x.pkl"] = PAYLOAD
    url = f"{server.url}/w/model_final_x.pkl"
    path = fetch(url, md5_prefix=MD5[:6], directory=tmp_path, progress=False)
    assert path == cached_path(url, tmp_path) and path.read_bytes() == PAYLOAD
    assert not list(path.parent.glob("*.part"))
    server.close()  # offline from now on
    again = fetch(url, md5_prefix=MD5[:6], directory=tmp_path, progress=False)
    assert again == path
    assert len(server.requests) == 1


def test_default_cache_is_detzoo_cache_env(server, cache):
    server.files["/w/a.safetensors"] = PAYLOAD
    path = fetch(f"{server.url}/w/a.safetensors", sha256=SHA, progress=False)
    assert path == cache / "weights" / "a.safetensors"


def test_broken_transfer_is_resumed(server, tmp_path):
    server.files["/w/a.safetensors"] = PAYLOAD
    server.cut_first = 1
    path = fetch(f"{server.url}/w/a.safetensors", sha256=SHA, directory=tmp_path, progress=False)
    assert path.read_bytes() == PAYLOAD
    assert len(server.requests) == 2
    assert server.requests[1][1] == f"bytes={len(PAYLOAD) // 2}-"  # only the missing half


def test_server_error_is_retried(server, tmp_path):
    server.files["/w/a.safetensors"] = PAYLOAD
    server.fail_first = 2
    path = fetch(f"{server.url}/w/a.safetensors", sha256=SHA, directory=tmp_path, progress=False)
    assert path.read_bytes() == PAYLOAD
    assert len(server.requests) == 3


def test_stale_partial_file_is_discarded(server, tmp_path):
    """A leftover .part as long as the file (a download killed before its rename): the server
    answers the range request with 416, and the download starts over."""
    server.files["/w/a.safetensors"] = PAYLOAD
    part = tmp_path / "weights" / "a.safetensors.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"\0" * len(PAYLOAD))
    path = fetch(f"{server.url}/w/a.safetensors", sha256=SHA, directory=tmp_path, progress=False)
    assert path.read_bytes() == PAYLOAD
    assert [r[1] for r in server.requests] == [f"bytes={len(PAYLOAD)}-", None]


def test_unreachable_server_is_a_clear_error(server, tmp_path):
    url = f"{server.url}/w/a.safetensors"
    server.close()
    with pytest.raises(DownloadError, match=r"after 3 attempts.*offline.*weights="):
        fetch(url, sha256=SHA, directory=tmp_path, progress=False)
    assert not cached_path(url, tmp_path).exists()


def test_checksum_mismatch_deletes_the_file_and_names_it(server, tmp_path):
    server.files["/w/bad.safetensors"] = PAYLOAD
    url = f"{server.url}/w/bad.safetensors"
    with pytest.raises(ChecksumError, match=r"bad\.safetensors.*sha256 is .*expected 0+") as info:
        fetch(url, sha256="0" * 64, directory=tmp_path, progress=False)
    assert SHA in str(info.value) and "deleted" in str(info.value)
    assert not (tmp_path / "weights" / "bad.safetensors.part").exists()
    assert not cached_path(url, tmp_path).exists()


def test_md5_prefix_mismatch_names_expected_and_actual(server, tmp_path):
    server.files["/w/model_final_abcdef.pkl"] = PAYLOAD
    with pytest.raises(ChecksumError, match=rf"md5 is {MD5}, expected it to start with abcdef"):
        fetch(
            f"{server.url}/w/model_final_abcdef.pkl",
            md5_prefix="abcdef",
            directory=tmp_path,
            progress=False,
        )
    assert not (tmp_path / "weights" / "model_final_abcdef.pkl").exists()
    assert not (tmp_path / "weights" / "model_final_abcdef.pkl.part").exists()


def test_404_is_a_clear_error(server, tmp_path):
    with pytest.raises(DownloadError, match="HTTP 404.*check the URL"):
        fetch(f"{server.url}/missing/x.pkl", directory=tmp_path, progress=False)
    assert len(server.requests) == 1  # not retried


def test_local_path_and_file_url(tmp_path):
    f = tmp_path / "local.pth"
    f.write_bytes(PAYLOAD)
    assert fetch(str(f), sha256=SHA) == f
    assert fetch(f.as_uri(), sha256=SHA) == f
    with pytest.raises(ChecksumError, match="local.pth"):
        fetch(f.as_uri(), md5_prefix="ffffff")
    assert f.exists()  # a user's own file is never deleted
    with pytest.raises(FileNotFoundError, match="nothere"):
        fetch(str(tmp_path / "nothere.pth"))


def _fetch_in_process(url: str, directory: str, queue) -> None:
    torch.set_num_threads(1)
    queue.put(str(fetch(url, sha256=SHA, directory=Path(directory), progress=False)))


def _processes():
    """Forked processes: they start at once (no re-import of torch/Lightning, which takes longer
    than the download) and run with one thread, as DataLoader workers do after a fork."""
    return multiprocessing.get_context("fork")


def test_concurrent_processes_share_one_good_file(server, tmp_path):
    server.files["/w/shared.safetensors"] = PAYLOAD
    server.delay = 1.0  # the second process arrives while the first is downloading
    url = f"{server.url}/w/shared.safetensors"
    ctx = _processes()
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
    assert len(server.requests) == 1  # the second process waited and found the finished file


def _get_in_process(queue) -> None:
    import detzoo

    torch.set_num_threads(1)  # first: the parent's OpenMP threads do not exist after the fork
    model = detzoo.zoo.get("tiny_faster_rcnn", device="cpu", progress=False)
    queue.put({k: float(v.double().sum()) for k, v in model.state_dict().items()})


def test_concurrent_get_of_one_model_from_two_processes(server, tiny_zoo, cache, tmp_path):
    from detzoo.zoo.build import build_model

    state = randomised_state(build_model(TINY_CONFIGS["tiny_faster_rcnn"]))
    pkl = write_detectron2_pkl(state, tmp_path / "files")
    server.files[f"/d2/{pkl.name}"] = pkl.read_bytes()
    server.delay = 1.0
    tiny_zoo({"tiny_faster_rcnn": {"format": "detectron2", "url": f"{server.url}/d2/{pkl.name}"}})
    ctx = _processes()  # children see DETZOO_CACHE / DETZOO_ZOO_CONFIGS
    queue = ctx.Queue()
    procs = [ctx.Process(target=_get_in_process, args=(queue,)) for _ in range(2)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=300) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    expected = {k: float(v.double().sum()) for k, v in state.items()}
    assert results[0] == results[1] == expected
    assert len(server.requests) == 1
    cached = cache / "weights" / pkl.name
    assert cached.read_bytes() == pkl.read_bytes()
    assert sorted(p.name for p in cached.parent.iterdir()) == [pkl.name, pkl.name + ".lock"]
