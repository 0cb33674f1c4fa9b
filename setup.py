"""Builds the compiled kernel extension ``detzoo._C`` from ``ops/``.

Everything else about the package lives in pyproject.toml. The CPU kernels always build; the
CUDA kernels (``ops/cuda/*.cu``) build when a CUDA toolkit is found and torch sees a GPU, or when
``FORCE_CUDA=1`` (compile-checking on a machine without a GPU). Build against the installed torch:
``pip install --no-build-isolation -e .``.
"""

import glob
import os

import torch
from setuptools import setup
from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension


def _want_cuda() -> bool:
    if os.environ.get("FORCE_CUDA", "0") == "1":
        return True
    return torch.cuda.is_available() and CUDA_HOME is not None


def extensions() -> list:
    sources = sorted(glob.glob("ops/*.cpp") + glob.glob("ops/cpu/*.cpp"))
    # -fopenmp: at::parallel_for is a header template; without it the kernels run on one thread.
    cxx = ["-O3", "-fopenmp"]
    if _want_cuda():
        sources += sorted(glob.glob("ops/cuda/*.cu"))
        nvcc = ["-O3", "--expt-relaxed-constexpr"]
        return [
            CUDAExtension(
                "detzoo._C",
                sources,
                include_dirs=[os.path.abspath("ops")],
                define_macros=[("WITH_CUDA", None)],
                extra_compile_args={"cxx": cxx, "nvcc": nvcc},
            )
        ]
    return [
        CppExtension(
            "detzoo._C",
            sources,
            include_dirs=[os.path.abspath("ops")],
            extra_compile_args={"cxx": cxx},
        )
    ]


setup(ext_modules=extensions(), cmdclass={"build_ext": BuildExtension})
