"""Compile-checks CUDA sources with nvcc (no GPU needed, nothing is linked or run).

Usage: python .ci/nvcc_check.py [file.cu ...]   (default: every ops/cuda/*.cu)
Needs CUDA_HOME (default /usr/local/cuda) and the CUDA headers of torch's nvidia wheels on CPATH;
this script adds the latter itself when it finds them in the active environment.
"""

from __future__ import annotations

import glob
import os
import subprocess
import sys
import sysconfig
import tempfile

os.environ.setdefault("CUDA_HOME", "/usr/local/cuda")  # before torch reads it

import torch  # noqa: E402
from torch.utils.cpp_extension import include_paths  # noqa: E402


def nvcc_command(source: str, out: str) -> list[str]:
    cuda_home = os.environ.get("CUDA_HOME", "/usr/local/cuda")
    arch = os.environ.get("TORCH_CUDA_ARCH_LIST", "9.0").split(";")[0].replace(".", "")
    abi = int(torch.compiled_with_cxx11_abi())
    includes = include_paths(device_type="cuda") + [sysconfig.get_paths()["include"], "ops"]
    return [
        os.path.join(cuda_home, "bin", "nvcc"),
        "-c",
        source,
        "-o",
        out,
        *[f"-I{p}" for p in includes],
        "-DWITH_CUDA",
        "-DTORCH_EXTENSION_NAME=_C",
        "-DTORCH_API_INCLUDE_EXTENSION_H",
        f"-D_GLIBCXX_USE_CXX11_ABI={abi}",
        "-std=c++20",
        "-O1",
        "--expt-relaxed-constexpr",
        "-D__CUDA_NO_HALF_OPERATORS__",
        "-D__CUDA_NO_HALF_CONVERSIONS__",
        "-D__CUDA_NO_BFLOAT16_CONVERSIONS__",
        "-D__CUDA_NO_HALF2_OPERATORS__",
        f"-gencode=arch=compute_{arch},code=sm_{arch}",
        "-Xcompiler",
        "-fPIC",
    ]


def main(argv: list[str]) -> int:
    sources = argv or sorted(glob.glob("ops/cuda/*.cu"))
    if not sources:
        print("nvcc_check: no CUDA sources")
        return 0
    site = os.path.dirname(os.path.dirname(torch.__file__))
    cu13 = os.path.join(site, "nvidia", "cu13", "include")
    env = dict(os.environ)
    if os.path.isdir(cu13):
        env["CPATH"] = os.pathsep.join(p for p in (cu13, env.get("CPATH", "")) if p)
    failed = []
    with tempfile.TemporaryDirectory() as tmp:
        for src in sources:
            out = os.path.join(tmp, os.path.basename(src) + ".o")
            proc = subprocess.run(nvcc_command(src, out), env=env, capture_output=True, text=True)
            status = "ok" if proc.returncode == 0 else "FAILED"
            print(f"nvcc_check: {src}: {status}", flush=True)
            if proc.returncode != 0:
                print(proc.stdout + proc.stderr)
                failed.append(src)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
