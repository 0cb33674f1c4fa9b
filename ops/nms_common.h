// Pieces shared by the CPU and CUDA kernels of detzoo::nms and detzoo::batched_nms: input
// checks, the dtype the boxes are compared in, and the IoU threshold in that dtype.
//
// Semantics (torchvision.ops.nms): boxes are visited by decreasing score, ties by lower index;
// a box is suppressed when inter / (area_i + area_j - inter) > iou_threshold for a kept box i,
// with inter = max(0, min(x2) - max(x1)) * max(0, min(y2) - max(y1)) and area = (x2-x1)*(y2-y1),
// every operation rounded once in the compute dtype (no fused multiply-add), so results are
// bit-identical to torchvision's CPU kernel.
#pragma once

#include <torch/types.h>

#include <cmath>
#include <limits>

namespace detzoo {
namespace nms {

// Checks shapes and dtypes of nms/batched_nms inputs (`idxs` may be undefined for nms).
inline void check_inputs(const char* op, const at::Tensor& boxes, const at::Tensor& scores,
                         const at::Tensor& idxs) {
  TORCH_CHECK(boxes.dim() == 2 && boxes.size(1) == 4, op,
              ": boxes must be [N, 4] (x1, y1, x2, y2), got ", boxes.sizes());
  TORCH_CHECK(scores.dim() == 1 && scores.size(0) == boxes.size(0), op,
              ": scores must be [N] with N = boxes.size(0), got ", scores.sizes(), " for boxes ",
              boxes.sizes());
  const auto dtype = boxes.scalar_type();
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kDouble || dtype == at::kHalf ||
                  dtype == at::kBFloat16,
              op, ": boxes must be float32, float64, float16 or bfloat16, got ", dtype);
  TORCH_CHECK(!at::isComplexType(scores.scalar_type()) && scores.scalar_type() != at::kBool, op,
              ": scores must be real numbers, got ", scores.scalar_type());
  TORCH_CHECK(scores.device() == boxes.device(), op, ": boxes (", boxes.device(),
              ") and scores (", scores.device(), ") must be on the same device");
  if (idxs.defined()) {
    TORCH_CHECK(idxs.dim() == 1 && idxs.size(0) == boxes.size(0), op,
                ": idxs must be [N] with N = boxes.size(0), got ", idxs.sizes());
    TORCH_CHECK(at::isIntegralType(idxs.scalar_type(), /*includeBool=*/false), op,
                ": idxs must be an integer tensor of category ids, got ", idxs.scalar_type());
    TORCH_CHECK(idxs.device() == boxes.device(), op, ": boxes (", boxes.device(), ") and idxs (",
                idxs.device(), ") must be on the same device");
  }
}

// Boxes as the kernels read them: contiguous float32 or float64 (float16/bfloat16 are upcast
// to float32, where every value is exact).
inline at::Tensor compute_boxes(const at::Tensor& boxes) {
  const bool reduced = boxes.scalar_type() == at::kHalf || boxes.scalar_type() == at::kBFloat16;
  return (reduced ? boxes.to(at::kFloat) : boxes).contiguous();
}

// Indices of the boxes by decreasing score, ties by lower index (torchvision's order).
inline at::Tensor score_order(const at::Tensor& scores) {
  return std::get<1>(scores.sort(/*stable=*/true, /*dim=*/0, /*descending=*/true));
}

// The largest T not above `threshold`: for an IoU `v` of type T, `v > threshold` (compared in
// double, as torchvision does) is exactly `v > threshold_as<T>(threshold)`.
template <typename T>
inline T threshold_as(double threshold) {
  T t = static_cast<T>(threshold);
  if (static_cast<double>(t) > threshold) {
    t = std::nextafter(t, -std::numeric_limits<T>::infinity());
  }
  return t;
}

}  // namespace nms
}  // namespace detzoo
