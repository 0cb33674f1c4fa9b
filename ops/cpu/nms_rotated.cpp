// CPU kernel of detzoo::nms_rotated: greedy NMS of rotated boxes by decreasing score
// (Detectron2 semantics: a box is suppressed by a kept box when their IoU > iou_threshold, with
// the IoU of box_iou_rotated_utils.h, rotated::iou(kept, candidate), compared in the boxes' dtype).
//
// The greedy pass is the blocked, parallel sweep of nms_greedy.h (shared with nms). The
// suppression test of a kept box i against a tile of candidates j is exact, pair by pair, and
// decides every pair as `rotated::iou(box_i, box_j) > thr` would, bit for bit:
// - both boxes axis-aligned (angles at exact multiples of 90 degrees, the common case): the
//   expressions of rotated::iou's axis-aligned path, evaluated as one branch-free vectorised loop;
// - otherwise a vectorised pass over the tile rejects the pairs whose axis-aligned bounding
//   boxes are disjoint (intersection 0, so IoU 0, never above a threshold >= 0: the test
//   rotated::iou itself starts with), and only the remaining pairs get the exact polygon IoU.
// A negative threshold (every IoU 0 is above it) takes rotated::iou for every pair.
#include <ATen/Parallel.h>
#include <torch/library.h>
#include <torch/types.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "box_iou_rotated_utils.h"
#include "cpu/nms_greedy.h"

namespace detzoo {
namespace {

using greedy::Flag;
using greedy::kTile;
using rotated::RBox;

// Rotated boxes in score order: the geometry rotated::iou needs (rbox, never moved: box k is
// rbox[slot[k]]) and, as structure of arrays for the vectorised loops, the centres, the half
// extents of the axis-aligned bounds, the areas and whether each box is axis-aligned.
template <typename T>
struct RotatedBoxes {
  using Scalar = T;
  std::vector<RBox<T>> rbox;
  std::vector<int64_t> slot;
  std::vector<T> cx, cy, ex, ey, area;
  std::vector<Flag<T>> aligned;  // 1 where the box is axis-aligned
  T thr;
  bool all_aligned;  // every box is axis-aligned (then tiles need no per-pair dispatch)
  bool can_reject;   // thr >= 0: pairs of IoU 0 (disjoint bounds, empty box) are never suppressed

  // Gathers boxes[order[r]] (5 values each) for the ranks r = ranks[0..count), in that order.
  RotatedBoxes(const T* boxes, const int64_t* order, const int64_t* ranks, int64_t count,
               T threshold)
      : rbox(count), slot(count), cx(count), cy(count), ex(count), ey(count), area(count),
        aligned(count), thr(threshold), can_reject(threshold >= T(0)) {
    for (int64_t k = 0; k < count; ++k) {
      const RBox<T> r = rotated::make_rbox(boxes + 5 * order[ranks[k]]);
      rbox[k] = r;
      slot[k] = k;
      cx[k] = r.cx;
      cy[k] = r.cy;
      ex[k] = r.ex;
      ey[k] = r.ey;
      area[k] = r.area;
      aligned[k] = r.axis_aligned ? 1 : 0;
    }
    all_aligned = std::all_of(aligned.begin(), aligned.end(), [](Flag<T> a) { return a != 0; });
  }

  int64_t size() const { return static_cast<int64_t>(slot.size()); }

  void move(int64_t from, int64_t to) {
    slot[to] = slot[from];
    cx[to] = cx[from];
    cy[to] = cy[from];
    ex[to] = ex[from];
    ey[to] = ey[from];
    area[to] = area[from];
    aligned[to] = aligned[from];
  }

  void sweep(const int64_t* kept, int64_t num_kept, int64_t lo, int64_t hi,
             Flag<T>* suppressed) const;
};

// Both boxes axis-aligned, thr >= 0 and box i not empty: flags box j in [t0, t1) when
// rotated::iou(box i, box j) > thr. The expressions are rotated::iou's axis-aligned path (same
// operations, same order); where that path returns 0 (empty box j, disjoint bounds) or NaN,
// `> thr` is false, so those pairs are masked out instead of having their IoU replaced by 0
// (a select GCC would not vectorise). The decision is bit-identical to rotated::iou's.
template <typename T>
DETZOO_NMS_INLINE void sweep_aligned(const RotatedBoxes<T>& c, int64_t i, int64_t t0, int64_t t1,
                                     Flag<T>* __restrict__ sup) {
  using rotated::abs_;
  using rotated::max_;
  using rotated::min_;
  const T* __restrict__ cx = c.cx.data();
  const T* __restrict__ cy = c.cy.data();
  const T* __restrict__ ex = c.ex.data();
  const T* __restrict__ ey = c.ey.data();
  const T* __restrict__ area = c.area.data();
  const T icx = cx[i], icy = cy[i], iex = ex[i], iey = ey[i], iarea = area[i];
  const T thr = c.thr;
  for (int64_t j = t0; j < t1; ++j) {
    const T gx = icx - cx[j];
    const T gy = icy - cy[j];
    const bool disjoint = (abs_(gx) >= iex + ex[j]) | (abs_(gy) >= iey + ey[j]);
    const T ox = min_(gx + iex, ex[j]) - max_(gx - iex, -ex[j]);
    const T oy = min_(gy + iey, ey[j]) - max_(gy - iey, -ey[j]);
    const T inter = max_(ox, T(0)) * max_(oy, T(0));
    const T iou = inter / (iarea + area[j] - inter);
    const bool above = !disjoint & !(area[j] < T(1e-14)) & (iou > thr);
    sup[j] |= static_cast<Flag<T>>(above);
  }
}

// Any boxes: a vectorised pass keeps the pairs still open (j not yet suppressed and, when
// thr >= 0, bounds not disjoint, with rotated::intersection_area's own test), then each of them
// gets rotated::iou.
template <typename T>
DETZOO_NMS_INLINE void sweep_general(const RotatedBoxes<T>& c, int64_t i, int64_t t0, int64_t t1,
                                     Flag<T>* __restrict__ sup) {
  using rotated::abs_;
  const T* __restrict__ cx = c.cx.data();
  const T* __restrict__ cy = c.cy.data();
  const T* __restrict__ ex = c.ex.data();
  const T* __restrict__ ey = c.ey.data();
  const T icx = cx[i], icy = cy[i], iex = ex[i], iey = ey[i];
  const Flag<T> reject = c.can_reject ? 1 : 0;
  Flag<T> open[kTile];
  for (int64_t j = t0; j < t1; ++j) {
    const bool disjoint =
        (abs_(icx - cx[j]) >= iex + ex[j]) | (abs_(icy - cy[j]) >= iey + ey[j]);
    open[j - t0] = static_cast<Flag<T>>(sup[j] == 0) & ~(static_cast<Flag<T>>(disjoint) & reject);
  }
  int32_t todo[kTile];
  int64_t num_todo = 0;
  for (int64_t j = 0; j < t1 - t0; ++j) {
    todo[num_todo] = static_cast<int32_t>(j);
    num_todo += open[j] & 1;
  }
  const RBox<T>* rbox = c.rbox.data();
  const int64_t* slot = c.slot.data() + t0;
  const RBox<T>& bi = rbox[c.slot[i]];
  for (int64_t k = 0; k < num_todo; ++k) {
    const int32_t j = todo[k];
    sup[t0 + j] = static_cast<Flag<T>>(rotated::iou(bi, rbox[slot[j]]) > c.thr);
  }
}

// Flags every box j in [lo, hi) suppressed by a kept box kept[0..num_kept).
template <typename T>
DETZOO_NMS_INLINE void sweep_impl(const RotatedBoxes<T>& c, const int64_t* kept,
                                  int64_t num_kept, int64_t lo, int64_t hi, Flag<T>* sup) {
  const Flag<T>* aligned = c.aligned.data();
  for (int64_t t0 = lo; t0 < hi; t0 += kTile) {
    const int64_t t1 = std::min(t0 + kTile, hi);
    bool tile_aligned = c.all_aligned;
    if (!tile_aligned) {
      Flag<T> all = 1;
      for (int64_t j = t0; j < t1; ++j) {
        all &= aligned[j];
      }
      tile_aligned = all != 0;
    }
    for (int64_t k = 0; k < num_kept; ++k) {
      const int64_t i = kept[k];
      if (tile_aligned && aligned[i] && c.can_reject) {
        if (!(c.area[i] < T(1e-14))) {  // an empty kept box has IoU 0 with everything
          sweep_aligned(c, i, t0, t1, sup);
        }
      } else {
        sweep_general(c, i, t0, t1, sup);
      }
    }
  }
}

DETZOO_NMS_CLONES void sweep_rotated(const RotatedBoxes<float>& c, const int64_t* kept,
                                     int64_t num_kept, int64_t lo, int64_t hi, int32_t* sup) {
  sweep_impl(c, kept, num_kept, lo, hi, sup);
}

DETZOO_NMS_CLONES void sweep_rotated(const RotatedBoxes<double>& c, const int64_t* kept,
                                     int64_t num_kept, int64_t lo, int64_t hi, int64_t* sup) {
  sweep_impl(c, kept, num_kept, lo, hi, sup);
}

template <typename T>
void RotatedBoxes<T>::sweep(const int64_t* kept, int64_t num_kept, int64_t lo, int64_t hi,
                            Flag<T>* suppressed) const {
  sweep_rotated(*this, kept, num_kept, lo, hi, suppressed);
}

at::Tensor nms_rotated_cpu(const at::Tensor& boxes, const at::Tensor& scores, double iou_threshold) {
  TORCH_CHECK(boxes.dim() == 2 && boxes.size(1) == 5, "nms_rotated: boxes must be [N, 5], got ",
              boxes.sizes());
  TORCH_CHECK(scores.dim() == 1 && scores.size(0) == boxes.size(0),
              "nms_rotated: scores must be [N] with N = boxes.size(0), got ", scores.sizes(),
              " for boxes ", boxes.sizes());
  TORCH_CHECK(boxes.scalar_type() == at::kFloat || boxes.scalar_type() == at::kDouble,
              "nms_rotated: boxes must be float32 or float64, got ", boxes.scalar_type());
  const int64_t n = boxes.size(0);
  if (n == 0) {
    return at::empty({0}, boxes.options().dtype(at::kLong));
  }
  const at::Tensor order =
      std::get<1>(scores.sort(/*stable=*/true, /*dim=*/0, /*descending=*/true)).contiguous();
  const at::Tensor ranks = at::arange(n, order.options());
  const at::Tensor b = boxes.contiguous();
  return AT_DISPATCH_FLOATING_TYPES(b.scalar_type(), "nms_rotated_cpu", [&] {
    const scalar_t* data = b.data_ptr<scalar_t>();
    const int64_t* ord = order.data_ptr<int64_t>();
    // Compared in the boxes' dtype (as the plain-PyTorch path compares its IoU tensor).
    const auto thr = static_cast<scalar_t>(iou_threshold);
    return greedy::keep_groups<RotatedBoxes<scalar_t>>(
        order, ranks, {0, n}, [&](const int64_t* group, int64_t count) {
          return RotatedBoxes<scalar_t>(data, ord, group, count, thr);
        });
  });
}

}  // namespace

TORCH_LIBRARY_IMPL(detzoo, CPU, m) {
  m.impl("nms_rotated", &nms_rotated_cpu);
}

}  // namespace detzoo
