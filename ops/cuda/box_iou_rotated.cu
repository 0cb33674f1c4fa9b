// CUDA kernel of detzoo::box_iou_rotated: pairwise IoU of rotated boxes (Detectron2 semantics).
// Each block computes a kTile x kTile tile of the output; the tile's boxes are converted to
// RBox (one cos/sin each) once, in shared memory.
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>
#include <torch/types.h>

#include <limits>

#include "box_iou_rotated_utils.h"

namespace detzoo {
namespace {

using rotated::RBox;

constexpr int kTile = 16;

template <typename T>
__global__ void box_iou_rotated_kernel(const T* __restrict__ boxes1, const T* __restrict__ boxes2,
                                       int64_t n, int64_t m, T* __restrict__ out) {
  __shared__ RBox<T> rows[kTile];
  __shared__ RBox<T> cols[kTile];
  const int64_t row0 = static_cast<int64_t>(blockIdx.x) * kTile;
  const int64_t col0 = static_cast<int64_t>(blockIdx.y) * kTile;
  const int t = threadIdx.y * kTile + threadIdx.x;
  if (t < kTile && row0 + t < n) {
    rows[t] = rotated::make_rbox(boxes1 + 5 * (row0 + t));
  } else if (t >= kTile && t < 2 * kTile && col0 + t - kTile < m) {
    cols[t - kTile] = rotated::make_rbox(boxes2 + 5 * (col0 + t - kTile));
  }
  __syncthreads();
  const int64_t i = row0 + threadIdx.y;
  const int64_t j = col0 + threadIdx.x;
  if (i < n && j < m) {
    out[i * m + j] = rotated::iou(rows[threadIdx.y], cols[threadIdx.x]);
  }
}

at::Tensor box_iou_rotated_cuda(const at::Tensor& boxes1, const at::Tensor& boxes2) {
  TORCH_CHECK(boxes1.dim() == 2 && boxes1.size(1) == 5, "box_iou_rotated: boxes1 must be [N, 5], got ",
              boxes1.sizes());
  TORCH_CHECK(boxes2.dim() == 2 && boxes2.size(1) == 5, "box_iou_rotated: boxes2 must be [M, 5], got ",
              boxes2.sizes());
  TORCH_CHECK(boxes2.is_cuda() && boxes1.device() == boxes2.device(),
              "box_iou_rotated: boxes1 and boxes2 must be on the same CUDA device");
  TORCH_CHECK(boxes1.scalar_type() == boxes2.scalar_type(),
              "box_iou_rotated: boxes1 and boxes2 must have the same dtype, got ",
              boxes1.scalar_type(), " and ", boxes2.scalar_type());
  TORCH_CHECK(boxes1.scalar_type() == at::kFloat || boxes1.scalar_type() == at::kDouble,
              "box_iou_rotated: boxes must be float32 or float64, got ", boxes1.scalar_type());
  const c10::cuda::CUDAGuard guard(boxes1.device());
  const int64_t n = boxes1.size(0);
  const int64_t m = boxes2.size(0);
  at::Tensor ious = at::empty({n, m}, boxes1.options());
  if (n == 0 || m == 0) {
    return ious;
  }
  const int64_t row_tiles = (n + kTile - 1) / kTile;
  const int64_t col_tiles = (m + kTile - 1) / kTile;
  TORCH_CHECK(row_tiles <= std::numeric_limits<int32_t>::max() && col_tiles <= 65535,
              "box_iou_rotated: too many boxes (", n, " x ", m, ") for one launch");
  const dim3 grid(static_cast<unsigned>(row_tiles), static_cast<unsigned>(col_tiles));
  const dim3 block(kTile, kTile);
  const at::Tensor b1 = boxes1.contiguous();
  const at::Tensor b2 = boxes2.contiguous();
  AT_DISPATCH_FLOATING_TYPES(boxes1.scalar_type(), "box_iou_rotated_cuda", [&] {
    box_iou_rotated_kernel<scalar_t><<<grid, block, 0, at::cuda::getCurrentCUDAStream()>>>(
        b1.data_ptr<scalar_t>(), b2.data_ptr<scalar_t>(), n, m, ious.data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return ious;
}

}  // namespace

TORCH_LIBRARY_IMPL(detzoo, CUDA, m) {
  m.impl("box_iou_rotated", &box_iou_rotated_cuda);
}

}  // namespace detzoo
