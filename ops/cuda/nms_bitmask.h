// The greedy-bitmask NMS shared by the CUDA kernels of nms / batched_nms (ops/cuda/nms.cu) and
// nms_rotated (ops/cuda/nms_rotated.cu), which differ only in their boxes and in the test "does
// kept box i suppress box j", supplied as a Test policy (see below).
//
// For n boxes in score order:
// 1. suppression_mask_kernel sets bit j of mask[i] when box j (j > i) would be suppressed by box i,
//    in 64-box words, one block per (row block, column block) pair, the column block's boxes
//    loaded once into shared memory;
// 2. greedy_keep_kernel (a single block) walks the boxes in order and ORs the mask row of every
//    kept box into the `removed` words, so the greedy pass never leaves the device.
//
// A Test policy is a trivially copyable struct (passed by value to the kernel) with
//   using Box = ...;                                   // trivially constructible (shared memory)
//   __device__ Box load(int64_t i) const;             // the box of rank i
//   __device__ bool suppresses(const Box& kept, const Box& later) const;
#pragma once

#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <torch/types.h>

#include <cstdint>

namespace detzoo {
namespace nms_bitmask {
// Internal linkage: each including .cu gets its own copy of the (non-template) keep kernel.
namespace {

constexpr int kBits = 64;             // boxes per mask word and threads per mask block
constexpr int kKeepThreads = 256;     // threads of the greedy block
constexpr int64_t kSharedWords = 6144;  // `removed` words held in shared memory (48 KiB)

// mask [n, words]: bit k of mask[i * words + c] is set when box i suppresses box c * kBits + k.
// Only words c >= i / kBits are written (the greedy pass reads no others).
template <typename Test>
__global__ void suppression_mask_kernel(const Test test, int64_t n, int64_t words,
                                        uint64_t* __restrict__ mask) {
  const int64_t row_block = blockIdx.y;
  const int64_t col_block = blockIdx.x;
  if (col_block < row_block) {
    return;  // only j > i matters
  }
  __shared__ typename Test::Box cols[kBits];
  const int64_t col0 = col_block * kBits;
  const int64_t count = min(static_cast<int64_t>(kBits), n - col0);
  if (threadIdx.x < count) {
    cols[threadIdx.x] = test.load(col0 + threadIdx.x);
  }
  __syncthreads();
  const int64_t i = row_block * kBits + threadIdx.x;
  if (i >= n) {
    return;
  }
  const typename Test::Box bi = test.load(i);
  const int64_t first = col_block == row_block ? threadIdx.x + 1 : 0;
  uint64_t bits = 0;
  for (int64_t k = first; k < count; ++k) {
    if (test.suppresses(bi, cols[k])) {
      bits |= 1ULL << k;
    }
  }
  mask[i * words + col_block] = bits;
}

// One block. `removed` lives in shared memory when it fits (global_removed otherwise, zeroed).
// A kept box i only ORs bits of boxes j > i, so reading bit i races with no write to it.
__global__ void greedy_keep_kernel(const uint64_t* __restrict__ mask, int64_t n, int64_t words,
                                   uint64_t* global_removed, bool* __restrict__ keep) {
  extern __shared__ uint64_t shared_removed[];
  uint64_t* removed = global_removed ? global_removed : shared_removed;
  if (!global_removed) {
    for (int64_t w = threadIdx.x; w < words; w += blockDim.x) {
      removed[w] = 0;
    }
  }
  __syncthreads();
  for (int64_t i = 0; i < n; ++i) {
    const int64_t word = i / kBits;
    if ((removed[word] >> (i % kBits)) & 1ULL) {
      continue;  // every thread reads the same bit and skips alike
    }
    if (threadIdx.x == 0) {
      keep[i] = true;
    }
    const uint64_t* row = mask + i * words;
    for (int64_t w = word + threadIdx.x; w < words; w += blockDim.x) {
      removed[w] |= row[w];
    }
    __syncthreads();
  }
}

// Greedy NMS of the n >= 1 boxes `test` loads (in score order), on the current stream of the
// current device; returns keep [n] (bool, on `options`' device): keep[i] when box i is kept.
template <typename Test>
at::Tensor greedy_keep(const Test& test, int64_t n, const at::TensorOptions& options,
                       const char* op) {
  const int64_t words = (n + kBits - 1) / kBits;
  TORCH_CHECK(words <= 65535, op, ": too many boxes (", n, ") for one launch (at most ",
              65535 * kBits, ")");
  at::Tensor mask = at::empty({n, words}, options.dtype(at::kLong));
  at::Tensor keep = at::zeros({n}, options.dtype(at::kBool));
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  auto* mask_ptr = reinterpret_cast<uint64_t*>(mask.data_ptr<int64_t>());
  const dim3 grid(static_cast<unsigned>(words), static_cast<unsigned>(words));
  suppression_mask_kernel<Test><<<grid, kBits, 0, stream>>>(test, n, words, mask_ptr);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  const bool in_shared = words <= kSharedWords;
  at::Tensor global_removed =
      in_shared ? at::Tensor() : at::zeros({words}, options.dtype(at::kLong));
  const size_t shared_bytes = in_shared ? words * sizeof(uint64_t) : 0;
  greedy_keep_kernel<<<1, kKeepThreads, shared_bytes, stream>>>(
      mask_ptr, n, words,
      in_shared ? nullptr : reinterpret_cast<uint64_t*>(global_removed.data_ptr<int64_t>()),
      keep.data_ptr<bool>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return keep;
}

}  // namespace
}  // namespace nms_bitmask
}  // namespace detzoo
