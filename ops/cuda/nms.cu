// CUDA kernels of detzoo::nms and detzoo::batched_nms (torchvision semantics, see nms_common.h).
//
// Boxes (and, for batched_nms, their categories) are sorted by score, then the greedy-bitmask
// pass of nms_bitmask.h (shared with nms_rotated) runs with the test below: box i suppresses
// box j when their IoU is above the threshold and, for batched_nms, they have the same category.
// IoU uses round-to-nearest intrinsics (no fused multiply-add), so it is bit-identical to the
// CPU kernel.
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>
#include <torch/types.h>

#include "cuda/nms_bitmask.h"
#include "nms_common.h"

namespace detzoo {
namespace {

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

// An axis-aligned box as the suppression test reads it.
template <typename T>
struct XyxyBox {
  T x1, y1, x2, y2, area;
  int64_t category;
};

// Boxes [n, 4] and categories [n] (nullptr: one category), in score order.
template <typename T>
struct XyxySuppression {
  using Box = XyxyBox<T>;
  const T* boxes;
  const int64_t* categories;
  T thr;

  __device__ __forceinline__ Box load(int64_t i) const {
    const T* b = boxes + 4 * i;
    return {b[0], b[1], b[2], b[3], area_of(b), categories ? categories[i] : 0};
  }

  // IoU(kept box a, candidate b) > thr, with the CPU kernel's operations and roundings.
  __device__ __forceinline__ bool suppresses(const Box& a, const Box& b) const {
    if (a.category != b.category) {
      return false;
    }
    const T w = max_of(static_cast<T>(0), sub_rn(min_of(a.x2, b.x2), max_of(a.x1, b.x1)));
    const T h = max_of(static_cast<T>(0), sub_rn(min_of(a.y2, b.y2), max_of(a.y1, b.y1)));
    const T inter = mul_rn(w, h);
    return div_rn(inter, sub_rn(add_rn(a.area, b.area), inter)) > thr;
  }
};

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
  at::Tensor keep;
  AT_DISPATCH_FLOATING_TYPES(sorted.scalar_type(), "detzoo_nms_cuda", [&] {
    const XyxySuppression<scalar_t> test{
        sorted.data_ptr<scalar_t>(),
        categories.defined() ? categories.data_ptr<int64_t>() : nullptr,
        nms::threshold_as<scalar_t>(iou_threshold)};
    keep = nms_bitmask::greedy_keep(test, n, boxes.options(), "nms");
  });
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
