// CPU kernel of detzoo::box_iou_rotated: pairwise IoU of rotated boxes (Detectron2 semantics).
#include <ATen/Parallel.h>
#include <torch/library.h>
#include <torch/types.h>

#include <vector>

#include "box_iou_rotated_utils.h"

namespace detzoo {
namespace {

using rotated::RBox;

template <typename T>
std::vector<RBox<T>> make_rboxes(const at::Tensor& boxes) {
  const T* data = boxes.data_ptr<T>();
  std::vector<RBox<T>> out(boxes.size(0));
  for (size_t i = 0; i < out.size(); ++i) {
    out[i] = rotated::make_rbox(data + 5 * i);
  }
  return out;
}

at::Tensor box_iou_rotated_cpu(const at::Tensor& boxes1, const at::Tensor& boxes2) {
  TORCH_CHECK(boxes1.dim() == 2 && boxes1.size(1) == 5, "box_iou_rotated: boxes1 must be [N, 5], got ",
              boxes1.sizes());
  TORCH_CHECK(boxes2.dim() == 2 && boxes2.size(1) == 5, "box_iou_rotated: boxes2 must be [M, 5], got ",
              boxes2.sizes());
  TORCH_CHECK(boxes1.scalar_type() == boxes2.scalar_type(),
              "box_iou_rotated: boxes1 and boxes2 must have the same dtype, got ",
              boxes1.scalar_type(), " and ", boxes2.scalar_type());
  TORCH_CHECK(boxes1.scalar_type() == at::kFloat || boxes1.scalar_type() == at::kDouble,
              "box_iou_rotated: boxes must be float32 or float64, got ", boxes1.scalar_type());
  const int64_t n = boxes1.size(0);
  const int64_t m = boxes2.size(0);
  at::Tensor ious = at::empty({n, m}, boxes1.options());
  if (n == 0 || m == 0) {
    return ious;
  }
  AT_DISPATCH_FLOATING_TYPES(boxes1.scalar_type(), "box_iou_rotated_cpu", [&] {
    const auto a = make_rboxes<scalar_t>(boxes1.contiguous());
    const auto b = make_rboxes<scalar_t>(boxes2.contiguous());
    scalar_t* out = ious.data_ptr<scalar_t>();
    const int64_t grain = std::max<int64_t>(1, 16384 / m);  // rows per task
    at::parallel_for(0, n, grain, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        for (int64_t j = 0; j < m; ++j) {
          out[i * m + j] = rotated::iou(a[i], b[j]);
        }
      }
    });
  });
  return ious;
}

}  // namespace

TORCH_LIBRARY_IMPL(detzoo, CPU, m) {
  m.impl("box_iou_rotated", &box_iou_rotated_cpu);
}

}  // namespace detzoo
