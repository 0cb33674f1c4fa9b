// CUDA kernel of detzoo::nms_rotated: greedy NMS of rotated boxes by decreasing score
// (Detectron2 semantics: a box is suppressed by a kept box when their IoU > iou_threshold).
//
// 1. boxes are sorted by score and converted to RBox once;
// 2. suppression_mask_kernel sets bit j of mask[i] when box j (j > i) overlaps box i too much,
//    in 64-box words, one block per (row block, column block) pair;
// 3. greedy_keep_kernel (a single block) walks the boxes in order and ORs the mask row of
//    every kept box into the `removed` words, so the greedy pass never leaves the device.
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>
#include <torch/types.h>

#include "box_iou_rotated_utils.h"

namespace detzoo {
namespace {

using rotated::RBox;

constexpr int kBits = 64;  // boxes per mask word and threads per mask block
constexpr int kKeepThreads = 256;

template <typename T>
__global__ void make_rboxes_kernel(const T* __restrict__ boxes, const int64_t* __restrict__ order,
                                   int64_t n, RBox<T>* __restrict__ out) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) {
    out[i] = rotated::make_rbox(boxes + 5 * order[i]);
  }
}

template <typename T>
__global__ void suppression_mask_kernel(const RBox<T>* __restrict__ rboxes, int64_t n,
                                        int64_t words, T threshold, uint64_t* __restrict__ mask) {
  const int64_t row_block = blockIdx.x;
  const int64_t col_block = blockIdx.y;
  if (col_block < row_block) {
    return;  // only j > i matters
  }
  __shared__ RBox<T> cols[kBits];
  const int64_t col0 = col_block * kBits;
  const int64_t j_local = threadIdx.x;
  if (col0 + j_local < n) {
    cols[j_local] = rboxes[col0 + j_local];
  }
  __syncthreads();
  const int64_t i = row_block * kBits + threadIdx.x;
  if (i >= n) {
    return;
  }
  const RBox<T> bi = rboxes[i];
  const int64_t count = min(static_cast<int64_t>(kBits), n - col0);
  uint64_t bits = 0;
  for (int64_t k = 0; k < count; ++k) {
    if (col0 + k > i && rotated::iou(bi, cols[k]) > threshold) {
      bits |= 1ULL << k;
    }
  }
  mask[i * words + col_block] = bits;
}

// One block. `removed` (words entries, zeroed) lives in global memory so that any n fits;
// __syncthreads() orders its reads and writes within the block.
__global__ void greedy_keep_kernel(const uint64_t* __restrict__ mask, int64_t n, int64_t words,
                                   uint64_t* removed, bool* __restrict__ keep) {
  for (int64_t i = 0; i < n; ++i) {
    const int64_t word = i / kBits;
    const bool is_removed = (removed[word] >> (i % kBits)) & 1ULL;
    __syncthreads();  // everyone has read removed[word] before anyone updates it
    if (!is_removed) {
      if (threadIdx.x == 0) {
        keep[i] = true;
      }
      const uint64_t* row = mask + i * words;
      for (int64_t w = word + threadIdx.x; w < words; w += blockDim.x) {
        removed[w] |= row[w];
      }
    }
    __syncthreads();
  }
}

at::Tensor nms_rotated_cuda(const at::Tensor& boxes, const at::Tensor& scores, double iou_threshold) {
  TORCH_CHECK(boxes.dim() == 2 && boxes.size(1) == 5, "nms_rotated: boxes must be [N, 5], got ",
              boxes.sizes());
  TORCH_CHECK(scores.dim() == 1 && scores.size(0) == boxes.size(0),
              "nms_rotated: scores must be [N] with N = boxes.size(0), got ", scores.sizes(),
              " for boxes ", boxes.sizes());
  TORCH_CHECK(scores.device() == boxes.device(), "nms_rotated: boxes and scores must be on the same device");
  TORCH_CHECK(boxes.scalar_type() == at::kFloat || boxes.scalar_type() == at::kDouble,
              "nms_rotated: boxes must be float32 or float64, got ", boxes.scalar_type());
  const c10::cuda::CUDAGuard guard(boxes.device());
  const int64_t n = boxes.size(0);
  if (n == 0) {
    return at::empty({0}, boxes.options().dtype(at::kLong));
  }
  const at::Tensor order = std::get<1>(scores.sort(/*stable=*/true, /*dim=*/0, /*descending=*/true));
  const int64_t words = (n + kBits - 1) / kBits;
  TORCH_CHECK(words <= 65535, "nms_rotated: too many boxes (", n, ") for one launch");
  const at::Tensor b = boxes.contiguous();
  at::Tensor mask = at::empty({n, words}, boxes.options().dtype(at::kLong));
  at::Tensor removed = at::zeros({words}, boxes.options().dtype(at::kLong));
  at::Tensor keep = at::zeros({n}, boxes.options().dtype(at::kBool));
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(boxes.scalar_type(), "nms_rotated_cuda", [&] {
    at::Tensor rboxes = at::empty({n * static_cast<int64_t>(sizeof(RBox<scalar_t>))},
                                  boxes.options().dtype(at::kByte));
    auto* rb = reinterpret_cast<RBox<scalar_t>*>(rboxes.data_ptr<uint8_t>());
    make_rboxes_kernel<scalar_t><<<static_cast<unsigned>((n + 255) / 256), 256, 0, stream>>>(
        b.data_ptr<scalar_t>(), order.data_ptr<int64_t>(), n, rb);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    const dim3 grid(static_cast<unsigned>(words), static_cast<unsigned>(words));
    suppression_mask_kernel<scalar_t><<<grid, kBits, 0, stream>>>(
        rb, n, words, static_cast<scalar_t>(iou_threshold),
        reinterpret_cast<uint64_t*>(mask.data_ptr<int64_t>()));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  greedy_keep_kernel<<<1, kKeepThreads, 0, stream>>>(
      reinterpret_cast<const uint64_t*>(mask.data_ptr<int64_t>()), n, words,
      reinterpret_cast<uint64_t*>(removed.data_ptr<int64_t>()), keep.data_ptr<bool>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return order.masked_select(keep);
}

}  // namespace

TORCH_LIBRARY_IMPL(detzoo, CUDA, m) {
  m.impl("nms_rotated", &nms_rotated_cuda);
}

}  // namespace detzoo
