// CUDA kernel of detzoo::nms_rotated: greedy NMS of rotated boxes by decreasing score
// (Detectron2 semantics: a box is suppressed by a kept box when their IoU > iou_threshold).
//
// Boxes are sorted by score and converted to RBox once (make_rboxes_kernel), then the
// greedy-bitmask pass of nms_bitmask.h (shared with nms) runs with the test
// rotated::iou(kept, candidate) > threshold, the CPU kernel's decision.
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>
#include <torch/types.h>

#include "box_iou_rotated_utils.h"
#include "cuda/nms_bitmask.h"

namespace detzoo {
namespace {

using rotated::RBox;

template <typename T>
__global__ void make_rboxes_kernel(const T* __restrict__ boxes, const int64_t* __restrict__ order,
                                   int64_t n, RBox<T>* __restrict__ out) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) {
    out[i] = rotated::make_rbox(boxes + 5 * order[i]);
  }
}

// Rotated boxes rboxes [n] in score order.
template <typename T>
struct RotatedSuppression {
  using Box = RBox<T>;
  const RBox<T>* rboxes;
  T thr;

  __device__ __forceinline__ Box load(int64_t i) const { return rboxes[i]; }

  __device__ __forceinline__ bool suppresses(const Box& kept, const Box& later) const {
    return rotated::iou(kept, later) > thr;
  }
};

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
  const at::Tensor b = boxes.contiguous();
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  at::Tensor keep;
  AT_DISPATCH_FLOATING_TYPES(boxes.scalar_type(), "nms_rotated_cuda", [&] {
    at::Tensor rboxes = at::empty({n * static_cast<int64_t>(sizeof(RBox<scalar_t>))},
                                  boxes.options().dtype(at::kByte));
    auto* rb = reinterpret_cast<RBox<scalar_t>*>(rboxes.data_ptr<uint8_t>());
    make_rboxes_kernel<scalar_t><<<static_cast<unsigned>((n + 255) / 256), 256, 0, stream>>>(
        b.data_ptr<scalar_t>(), order.data_ptr<int64_t>(), n, rb);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    const RotatedSuppression<scalar_t> test{rb, static_cast<scalar_t>(iou_threshold)};
    keep = nms_bitmask::greedy_keep(test, n, boxes.options(), "nms_rotated");
  });
  return order.masked_select(keep);
}

}  // namespace

TORCH_LIBRARY_IMPL(detzoo, CUDA, m) {
  m.impl("nms_rotated", &nms_rotated_cuda);
}

}  // namespace detzoo
