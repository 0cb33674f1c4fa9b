// CUDA kernels of detzoo::nms and detzoo::batched_nms (torchvision semantics, see nms_common.h).
//
// 1. boxes (and, for batched_nms, their categories) are sorted by score;
// 2. overlap_mask_kernel sets bit j of mask[i] when box j (j > i) is suppressed by box i (IoU
//    above the threshold and, for batched_nms, the same category), in 64-box words, one block per
//    (row block, column block) pair; IoU uses round-to-nearest intrinsics (no fused
//    multiply-add), so it is bit-identical to the CPU kernel;
// 3. greedy_keep_kernel (a single block) walks the boxes in order and ORs the mask row of every
//    kept box into the `removed` words, so the greedy pass never leaves the device.
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>
#include <torch/types.h>

#include "nms_common.h"

namespace detzoo {
namespace {

constexpr int kBits = 64;            // boxes per mask word and threads per mask block
constexpr int kKeepThreads = 256;    // threads of the greedy block
constexpr int64_t kSharedWords = 6144;  // `removed` words held in shared memory (48 KiB)

__device__ __forceinline__ float add_rn(float a, float b) { return __fadd_rn(a, b); }
__device__ __forceinline__ float sub_rn(float a, float b) { return __fsub_rn(a, b); }
__device__ __forceinline__ float mul_rn(float a, float b) { return __fmul_rn(a, b); }
__device__ __forceinline__ float div_rn(float a, float b) { return __fdiv_rn(a, b); }
__device__ __forceinline__ double add_rn(double a, double b) { return __dadd_rn(a, b); }
__device__ __forceinline__ double sub_rn(double a, double b) { return __dsub_rn(a, b); }
__device__ __forceinline__ double mul_rn(double a, double b) { return __dmul_rn(a, b); }
__device__ __forceinline__ double div_rn(double a, double b) { return __ddiv_rn(a, b); }

// std::max / std::min, operand order included (as the CPU kernel computes them).
template <typename T>
__device__ __forceinline__ T max_of(T a, T b) { return a < b ? b : a; }
template <typename T>
__device__ __forceinline__ T min_of(T a, T b) { return b < a ? b : a; }

template <typename T>
__device__ __forceinline__ T area_of(const T* b) {
  return mul_rn(sub_rn(b[2], b[0]), sub_rn(b[3], b[1]));
}

// IoU(kept box a, candidate b) > thr, with the CPU kernel's operations and roundings.
template <typename T>
__device__ __forceinline__ bool iou_above(const T* a, T area_a, const T* b, T area_b, T thr) {
  const T w = max_of(static_cast<T>(0), sub_rn(min_of(a[2], b[2]), max_of(a[0], b[0])));
  const T h = max_of(static_cast<T>(0), sub_rn(min_of(a[3], b[3]), max_of(a[1], b[1])));
  const T inter = mul_rn(w, h);
  return div_rn(inter, sub_rn(add_rn(area_a, area_b), inter)) > thr;
}

// boxes [n, 4] and categories [n] (nullptr: one category) in score order.
template <typename T>
__global__ void overlap_mask_kernel(const T* __restrict__ boxes,
                                    const int64_t* __restrict__ categories, int64_t n,
                                    int64_t words, T thr, uint64_t* __restrict__ mask) {
  const int64_t row_block = blockIdx.y;
  const int64_t col_block = blockIdx.x;
  if (col_block < row_block) {
    return;  // only j > i matters
  }
  __shared__ T cols[kBits * 4];
  __shared__ T col_area[kBits];
  __shared__ int64_t col_cat[kBits];
  const int64_t col0 = col_block * kBits;
  const int64_t count = min(static_cast<int64_t>(kBits), n - col0);
  if (threadIdx.x < count) {
    const T* b = boxes + 4 * (col0 + threadIdx.x);
    for (int k = 0; k < 4; ++k) {
      cols[4 * threadIdx.x + k] = b[k];
    }
    col_area[threadIdx.x] = area_of(b);
    col_cat[threadIdx.x] = categories ? categories[col0 + threadIdx.x] : 0;
  }
  __syncthreads();
  const int64_t i = row_block * kBits + threadIdx.x;
  if (i >= n) {
    return;
  }
  const T* bi = boxes + 4 * i;
  const T area_i = area_of(bi);
  const int64_t cat_i = categories ? categories[i] : 0;
  const int64_t first = col_block == row_block ? threadIdx.x + 1 : 0;
  uint64_t bits = 0;
  for (int64_t k = first; k < count; ++k) {
    if (col_cat[k] == cat_i && iou_above(bi, area_i, cols + 4 * k, col_area[k], thr)) {
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

// Greedy NMS of `boxes` (float32/float64) by `scores`; `idxs` undefined: one category.
at::Tensor nms_kernel(const at::Tensor& boxes, const at::Tensor& scores, const at::Tensor& idxs,
                      double iou_threshold) {
  const c10::cuda::CUDAGuard guard(boxes.device());
  const int64_t n = boxes.size(0);
  if (n == 0) {
    return at::empty({0}, boxes.options().dtype(at::kLong));
  }
  const at::Tensor order = nms::score_order(scores);
  const at::Tensor sorted = nms::compute_boxes(boxes).index_select(0, order).contiguous();
  const at::Tensor categories =
      idxs.defined() ? idxs.index_select(0, order).to(at::kLong).contiguous() : at::Tensor();
  const int64_t words = (n + kBits - 1) / kBits;
  TORCH_CHECK(words <= 65535, "nms: too many boxes (", n, ") for one launch (at most ",
              65535 * kBits, ")");
  at::Tensor mask = at::empty({n, words}, boxes.options().dtype(at::kLong));
  at::Tensor keep = at::zeros({n}, boxes.options().dtype(at::kBool));
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  auto* mask_ptr = reinterpret_cast<uint64_t*>(mask.data_ptr<int64_t>());
  AT_DISPATCH_FLOATING_TYPES(sorted.scalar_type(), "detzoo_nms_cuda", [&] {
    const dim3 grid(static_cast<unsigned>(words), static_cast<unsigned>(words));
    overlap_mask_kernel<scalar_t><<<grid, kBits, 0, stream>>>(
        sorted.data_ptr<scalar_t>(), categories.defined() ? categories.data_ptr<int64_t>() : nullptr,
        n, words, nms::threshold_as<scalar_t>(iou_threshold), mask_ptr);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  const bool in_shared = words <= kSharedWords;
  at::Tensor global_removed =
      in_shared ? at::Tensor() : at::zeros({words}, boxes.options().dtype(at::kLong));
  const size_t shared_bytes = in_shared ? words * sizeof(uint64_t) : 0;
  greedy_keep_kernel<<<1, kKeepThreads, shared_bytes, stream>>>(
      mask_ptr, n, words,
      in_shared ? nullptr : reinterpret_cast<uint64_t*>(global_removed.data_ptr<int64_t>()),
      keep.data_ptr<bool>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return order.masked_select(keep);
}

at::Tensor nms_cuda(const at::Tensor& boxes, const at::Tensor& scores, double iou_threshold) {
  nms::check_inputs("nms", boxes, scores, at::Tensor());
  return nms_kernel(boxes, scores, at::Tensor(), iou_threshold);
}

at::Tensor batched_nms_cuda(const at::Tensor& boxes, const at::Tensor& scores,
                            const at::Tensor& idxs, double iou_threshold) {
  nms::check_inputs("batched_nms", boxes, scores, idxs);
  return nms_kernel(boxes, scores, idxs, iou_threshold);
}

}  // namespace

TORCH_LIBRARY_IMPL(detzoo, CUDA, m) {
  m.impl("nms", &nms_cuda);
  m.impl("batched_nms", &batched_nms_cuda);
}

}  // namespace detzoo
