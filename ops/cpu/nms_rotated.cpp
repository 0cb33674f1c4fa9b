// CPU kernel of detzoo::nms_rotated: greedy NMS of rotated boxes by decreasing score
// (Detectron2 semantics: a box is suppressed by a kept box when their IoU > iou_threshold).
#include <ATen/Parallel.h>
#include <torch/library.h>
#include <torch/types.h>

#include <vector>

#include "box_iou_rotated_utils.h"

namespace detzoo {
namespace {

using rotated::RBox;

// Candidates per task of the inner suppression loop: below this the loop runs on one thread
// (most pairs cost a few comparisons, so small loops do not pay for a fork/join).
constexpr int64_t kSuppressGrain = 2048;

template <typename T>
at::Tensor nms_rotated_sorted(const at::Tensor& boxes, const at::Tensor& order, double threshold) {
  const int64_t n = boxes.size(0);
  const T* data = boxes.data_ptr<T>();
  const int64_t* ord = order.data_ptr<int64_t>();
  std::vector<RBox<T>> rb(n);
  for (int64_t i = 0; i < n; ++i) {
    rb[i] = rotated::make_rbox(data + 5 * ord[i]);
  }
  const T thr = static_cast<T>(threshold);
  std::vector<uint8_t> suppressed(n, 0);
  at::Tensor keep = at::empty({n}, order.options());
  int64_t* kept = keep.data_ptr<int64_t>();
  int64_t num_kept = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (suppressed[i]) {
      continue;
    }
    kept[num_kept++] = ord[i];
    const RBox<T> bi = rb[i];
    at::parallel_for(i + 1, n, kSuppressGrain, [&](int64_t begin, int64_t end) {
      for (int64_t j = begin; j < end; ++j) {
        if (!suppressed[j] && rotated::iou(bi, rb[j]) > thr) {
          suppressed[j] = 1;
        }
      }
    });
  }
  return keep.narrow(0, 0, num_kept).clone();
}

at::Tensor nms_rotated_cpu(const at::Tensor& boxes, const at::Tensor& scores, double iou_threshold) {
  TORCH_CHECK(boxes.dim() == 2 && boxes.size(1) == 5, "nms_rotated: boxes must be [N, 5], got ",
              boxes.sizes());
  TORCH_CHECK(scores.dim() == 1 && scores.size(0) == boxes.size(0),
              "nms_rotated: scores must be [N] with N = boxes.size(0), got ", scores.sizes(),
              " for boxes ", boxes.sizes());
  TORCH_CHECK(boxes.scalar_type() == at::kFloat || boxes.scalar_type() == at::kDouble,
              "nms_rotated: boxes must be float32 or float64, got ", boxes.scalar_type());
  if (boxes.size(0) == 0) {
    return at::empty({0}, boxes.options().dtype(at::kLong));
  }
  const at::Tensor order = std::get<1>(scores.sort(/*stable=*/true, /*dim=*/0, /*descending=*/true));
  return AT_DISPATCH_FLOATING_TYPES(boxes.scalar_type(), "nms_rotated_cpu", [&] {
    return nms_rotated_sorted<scalar_t>(boxes.contiguous(), order.contiguous(), iou_threshold);
  });
}

}  // namespace

TORCH_LIBRARY_IMPL(detzoo, CPU, m) {
  m.impl("nms_rotated", &nms_rotated_cpu);
}

}  // namespace detzoo
