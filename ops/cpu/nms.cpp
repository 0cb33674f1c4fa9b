// CPU kernels of detzoo::nms and detzoo::batched_nms (torchvision semantics, see nms_common.h).
//
// The greedy pass is torchvision's, reorganised for speed with the same IoU arithmetic: the
// blocked, parallel sweep of nms_greedy.h (shared with nms_rotated), with the boxes of a category
// gathered in score order into contiguous arrays (x1, y1, x2, y2, area), so the IoU loop is
// branch-free and vectorises (AVX2 where the CPU has it). batched_nms runs the categories in
// parallel (a category with many boxes parallelises its own sweeps instead).
#include <ATen/Parallel.h>
#include <torch/library.h>
#include <torch/types.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "cpu/nms_greedy.h"
#include "nms_common.h"

namespace detzoo {
namespace {

using greedy::Flag;
using greedy::kTile;

// Axis-aligned boxes (x1, y1, x2, y2) in score order, as structure of arrays, and the threshold.
template <typename T>
struct XyxyBoxes {
  using Scalar = T;
  std::vector<T> x1, y1, x2, y2, area;
  T thr;

  // Gathers boxes[order[r]] for the ranks r = ranks[0..count), in that order.
  XyxyBoxes(const T* boxes, const int64_t* order, const int64_t* ranks, int64_t count, T threshold)
      : x1(count), y1(count), x2(count), y2(count), area(count), thr(threshold) {
    for (int64_t k = 0; k < count; ++k) {
      const T* b = boxes + 4 * order[ranks[k]];
      x1[k] = b[0];
      y1[k] = b[1];
      x2[k] = b[2];
      y2[k] = b[3];
      area[k] = (b[2] - b[0]) * (b[3] - b[1]);
    }
  }

  int64_t size() const { return static_cast<int64_t>(x1.size()); }

  void move(int64_t from, int64_t to) {
    x1[to] = x1[from];
    y1[to] = y1[from];
    x2[to] = x2[from];
    y2[to] = y2[from];
    area[to] = area[from];
  }

  void sweep(const int64_t* kept, int64_t num_kept, int64_t lo, int64_t hi,
             Flag<T>* suppressed) const;
};

// Flags every box j in [lo, hi) whose IoU with a kept box kept[0..num_kept) exceeds thr.
template <typename T>
DETZOO_NMS_INLINE void sweep_impl(const XyxyBoxes<T>& c, const int64_t* kept, int64_t num_kept,
                                  int64_t lo, int64_t hi, Flag<T>* __restrict__ sup) {
  const T* __restrict__ x1 = c.x1.data();
  const T* __restrict__ y1 = c.y1.data();
  const T* __restrict__ x2 = c.x2.data();
  const T* __restrict__ y2 = c.y2.data();
  const T* __restrict__ area = c.area.data();
  const T thr = c.thr;
  for (int64_t t0 = lo; t0 < hi; t0 += kTile) {
    const int64_t t1 = std::min(t0 + kTile, hi);
    for (int64_t k = 0; k < num_kept; ++k) {
      const int64_t i = kept[k];
      const T ix1 = x1[i], iy1 = y1[i], ix2 = x2[i], iy2 = y2[i], iarea = area[i];
      for (int64_t j = t0; j < t1; ++j) {
        const T w = std::max(static_cast<T>(0), std::min(ix2, x2[j]) - std::max(ix1, x1[j]));
        const T h = std::max(static_cast<T>(0), std::min(iy2, y2[j]) - std::max(iy1, y1[j]));
        const T inter = w * h;  // also the numerator, so no compiler fuses it into an FMA
        sup[j] |= static_cast<Flag<T>>(inter / (iarea + area[j] - inter) > thr);
      }
    }
  }
}

DETZOO_NMS_CLONES void sweep_xyxy(const XyxyBoxes<float>& c, const int64_t* kept, int64_t num_kept,
                                  int64_t lo, int64_t hi, int32_t* sup) {
  sweep_impl(c, kept, num_kept, lo, hi, sup);
}

DETZOO_NMS_CLONES void sweep_xyxy(const XyxyBoxes<double>& c, const int64_t* kept,
                                  int64_t num_kept, int64_t lo, int64_t hi, int64_t* sup) {
  sweep_impl(c, kept, num_kept, lo, hi, sup);
}

template <typename T>
void XyxyBoxes<T>::sweep(const int64_t* kept, int64_t num_kept, int64_t lo, int64_t hi,
                         Flag<T>* suppressed) const {
  sweep_xyxy(*this, kept, num_kept, lo, hi, suppressed);
}

at::Tensor run(const at::Tensor& boxes, const at::Tensor& order, const at::Tensor& ranks,
               const std::vector<int64_t>& offsets, double iou_threshold) {
  const at::Tensor b = nms::compute_boxes(boxes);
  return AT_DISPATCH_FLOATING_TYPES(b.scalar_type(), "detzoo_nms_cpu", [&] {
    const scalar_t* data = b.data_ptr<scalar_t>();
    const int64_t* ord = order.data_ptr<int64_t>();
    const scalar_t thr = nms::threshold_as<scalar_t>(iou_threshold);
    return greedy::keep_groups<XyxyBoxes<scalar_t>>(
        order, ranks, offsets, [&](const int64_t* group, int64_t count) {
          return XyxyBoxes<scalar_t>(data, ord, group, count, thr);
        });
  });
}

void check_cpu(const char* op, const at::Tensor& boxes) {
  TORCH_CHECK(boxes.device().is_cpu(), op, ": the CPU kernel got boxes on ", boxes.device());
}

at::Tensor nms_cpu(const at::Tensor& boxes, const at::Tensor& scores, double iou_threshold) {
  nms::check_inputs("nms", boxes, scores, at::Tensor());
  check_cpu("nms", boxes);
  const int64_t n = boxes.size(0);
  const at::Tensor order = nms::score_order(scores);
  const at::Tensor ranks = at::arange(n, order.options());
  return run(boxes, order, ranks, {0, n}, iou_threshold);
}

at::Tensor batched_nms_cpu(const at::Tensor& boxes, const at::Tensor& scores,
                           const at::Tensor& idxs, double iou_threshold) {
  nms::check_inputs("batched_nms", boxes, scores, idxs);
  check_cpu("batched_nms", boxes);
  const at::Tensor order = nms::score_order(scores);
  // Ranks grouped by category, in score order within each category.
  const at::Tensor categories = idxs.index_select(0, order).to(at::kLong);
  const auto [sorted_categories, ranks] =
      categories.sort(/*stable=*/true, /*dim=*/0, /*descending=*/false);
  const at::Tensor sc = sorted_categories.contiguous();
  const int64_t* cat = sc.data_ptr<int64_t>();
  const int64_t n = boxes.size(0);
  std::vector<int64_t> offsets{0};
  for (int64_t k = 1; k < n; ++k) {
    if (cat[k] != cat[k - 1]) {
      offsets.push_back(k);
    }
  }
  if (n > 0) {
    offsets.push_back(n);
  }
  return run(boxes, order, ranks.contiguous(), offsets, iou_threshold);
}

}  // namespace

TORCH_LIBRARY_IMPL(detzoo, CPU, m) {
  m.impl("nms", &nms_cpu);
  m.impl("batched_nms", &batched_nms_cpu);
}

}  // namespace detzoo
