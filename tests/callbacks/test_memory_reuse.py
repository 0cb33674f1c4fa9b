import platform
import subprocess
import sys
import textwrap
from types import SimpleNamespace

import pytest
from lightning.pytorch.accelerators import CPUAccelerator

from detzoo.callbacks import ReuseFreedMemory, memory_reuse

GLIBC = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"

# page faults per op whose 36 MB output is freed again (a feature map's ReLU, as in every training
# step), in a fresh interpreter (the setting is process-wide) with or without reuse_freed_memory()
FAULTS_PER_OP = textwrap.dedent(
    """
    import resource, sys, torch
    from detzoo.callbacks import reuse_freed_memory

    applied = reuse_freed_memory() if sys.argv[1] == "reuse" else None
    feature_map = torch.randn(180, 64, 28, 28)

    def faults_per_op():
        for _ in range(10):  # the first few outputs still extend the heap
            torch.relu(feature_map)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(5):
            torch.relu(feature_map)
        return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 5

    print(applied, faults_per_op())
    """
)


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
def test_freed_blocks_are_reused_without_page_faults():
    def run(mode: str) -> list[str]:
        command = [sys.executable, "-c", FAULTS_PER_OP, mode]
        return subprocess.run(command, capture_output=True, text=True, check=True).stdout.split()

    (_, default), (applied, reused) = run("default"), run("reuse")
    default, reused = float(default), float(reused)
    assert applied == "True"
    # 36 MB in 4 KiB pages is ~8,800 faults when the output is mapped afresh
    assert default > 4000, f"glibc's default should map a 36 MB output afresh: {default} faults"
    assert reused < 100, f"freed outputs should be reused: {reused} page faults per op"


def test_the_callback_applies_on_the_cpu_only(monkeypatch):
    calls = []
    monkeypatch.setattr(memory_reuse, "reuse_freed_memory", lambda: calls.append(1) or True)
    callback = ReuseFreedMemory()
    callback.setup(SimpleNamespace(accelerator=CPUAccelerator()), None, "fit")
    assert calls == [1]
    callback.setup(SimpleNamespace(accelerator=object()), None, "fit")
    assert calls == [1]
