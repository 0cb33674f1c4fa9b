// CPU kernels of detzoo::nms and detzoo::batched_nms (torchvision semantics, see nms_common.h).
//
// The greedy pass is torchvision's, reorganised for speed with the same IoU arithmetic:
// - the boxes of a category are gathered in score order into contiguous arrays (x1, y1, x2, y2,
//   area), so the IoU loop is branch-free and vectorises (AVX2 where the CPU has it);
// - boxes are resolved in blocks of kBlock: the block is resolved serially, then its kept boxes
//   suppress the rest of the boxes in one parallel sweep (one fork/join per block, not per box);
// - after each block, suppressed boxes are dropped from the arrays, so later sweeps skip them;
// - batched_nms runs the categories in parallel (a category with many boxes parallelises its
//   own sweeps instead).
#include <ATen/Parallel.h>
#include <torch/library.h>
#include <torch/types.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "nms_common.h"

// Hot loops are compiled for AVX2 and for the baseline ISA, picked at load time (x86-64 GCC).
// AVX2 alone (no FMA), so every IoU is computed with the same roundings as the baseline.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define DETZOO_NMS_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define DETZOO_NMS_CLONES
#endif
// The loop body must be compiled inside each clone, with that clone's ISA.
#if defined(__GNUC__)
#define DETZOO_NMS_INLINE inline __attribute__((always_inline))
#else
#define DETZOO_NMS_INLINE inline
#endif

namespace detzoo {
namespace {

constexpr int64_t kBlock = 128;  // boxes resolved serially before their kept boxes sweep the rest
constexpr int64_t kTile = 256;   // swept boxes per tile (stays in L1 while the kept boxes pass)
constexpr int64_t kMinPairsPerTask = 1 << 15;  // IoU tests per task of a parallel sweep
constexpr int64_t kLargeGroup = 4096;  // batched_nms: categories this big parallelise inside

// Suppression flag with the width of T, so flags and coordinates share vector lanes.
template <typename T>
using Flag = std::conditional_t<sizeof(T) == 8, int64_t, int32_t>;

// The boxes of one category still in play, in score order, as structure of arrays.
template <typename T>
struct Candidates {
  std::vector<T> x1, y1, x2, y2, area;
  std::vector<int64_t> rank;  // position of the box in the global score order
  std::vector<Flag<T>> suppressed;
  int64_t size = 0;

  // Gathers boxes[order[r]] for the ranks r = ranks[0..count), in that order.
  Candidates(const T* boxes, const int64_t* order, const int64_t* ranks, int64_t count)
      : x1(count), y1(count), x2(count), y2(count), area(count), rank(count),
        suppressed(count, 0), size(count) {
    for (int64_t k = 0; k < count; ++k) {
      const T* b = boxes + 4 * order[ranks[k]];
      x1[k] = b[0];
      y1[k] = b[1];
      x2[k] = b[2];
      y2[k] = b[3];
      area[k] = (b[2] - b[0]) * (b[3] - b[1]);
      rank[k] = ranks[k];
    }
  }

  // Drops the suppressed boxes of [from, size), keeping the order of the others.
  void compact(int64_t from) {
    int64_t out = from;
    for (int64_t k = from; k < size; ++k) {
      if (suppressed[k]) {
        continue;
      }
      x1[out] = x1[k];
      y1[out] = y1[k];
      x2[out] = x2[k];
      y2[out] = y2[k];
      area[out] = area[k];
      rank[out] = rank[k];
      suppressed[out] = 0;
      ++out;
    }
    size = out;
  }
};

// Flags every box j in [lo, hi) whose IoU with a kept box kept[0..num_kept) exceeds thr.
template <typename T>
DETZOO_NMS_INLINE void sweep_impl(Candidates<T>& c, const int64_t* kept, int64_t num_kept,
                                  int64_t lo, int64_t hi, T thr) {
  const T* __restrict__ x1 = c.x1.data();
  const T* __restrict__ y1 = c.y1.data();
  const T* __restrict__ x2 = c.x2.data();
  const T* __restrict__ y2 = c.y2.data();
  const T* __restrict__ area = c.area.data();
  Flag<T>* __restrict__ sup = c.suppressed.data();
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

DETZOO_NMS_CLONES void sweep(Candidates<float>& c, const int64_t* kept, int64_t num_kept,
                             int64_t lo, int64_t hi, float thr) {
  sweep_impl(c, kept, num_kept, lo, hi, thr);
}

DETZOO_NMS_CLONES void sweep(Candidates<double>& c, const int64_t* kept, int64_t num_kept,
                             int64_t lo, int64_t hi, double thr) {
  sweep_impl(c, kept, num_kept, lo, hi, thr);
}

// Greedy NMS of one category; sets keep[rank] = 1 for its kept boxes.
template <typename T>
void greedy(Candidates<T>& c, T thr, uint8_t* keep) {
  std::vector<int64_t> kept;
  kept.reserve(kBlock);
  for (int64_t start = 0; start < c.size;) {
    const int64_t end = std::min(start + kBlock, c.size);
    kept.clear();
    for (int64_t p = start; p < end; ++p) {
      if (!c.suppressed[p]) {
        kept.push_back(p);
        keep[c.rank[p]] = 1;
        sweep(c, &p, 1, p + 1, end, thr);
      }
    }
    const auto num_kept = static_cast<int64_t>(kept.size());
    const int64_t grain = std::max(kTile, kMinPairsPerTask / std::max<int64_t>(num_kept, 1));
    at::parallel_for(end, c.size, grain, [&](int64_t lo, int64_t hi) {
      sweep(c, kept.data(), num_kept, lo, hi, thr);
    });
    c.compact(end);
    start = end;
  }
}

// Runs the greedy pass on each group of ranks ranks[offsets[g]..offsets[g+1]) (ranks into
// `order`, ascending within a group) and returns the kept boxes' indices by increasing rank.
template <typename T>
at::Tensor keep_groups(const at::Tensor& boxes, const at::Tensor& order, const at::Tensor& ranks,
                       const std::vector<int64_t>& offsets, double iou_threshold) {
  const int64_t n = order.size(0);
  const T* data = boxes.data_ptr<T>();
  const int64_t* ord = order.data_ptr<int64_t>();
  const int64_t* rk = ranks.data_ptr<int64_t>();
  const T thr = nms::threshold_as<T>(iou_threshold);
  std::vector<uint8_t> keep(n, 0);
  auto run_group = [&](size_t g) {
    Candidates<T> c(data, ord, rk + offsets[g], offsets[g + 1] - offsets[g]);
    greedy(c, thr, keep.data());
  };
  const size_t num_groups = offsets.size() - 1;
  std::vector<size_t> small;
  for (size_t g = 0; g < num_groups; ++g) {
    if (num_groups == 1 || offsets[g + 1] - offsets[g] >= kLargeGroup) {
      run_group(g);  // its sweeps run in parallel
    } else {
      small.push_back(g);
    }
  }
  at::parallel_for(0, static_cast<int64_t>(small.size()), 1, [&](int64_t lo, int64_t hi) {
    for (int64_t k = lo; k < hi; ++k) {
      run_group(small[k]);
    }
  });
  int64_t num_kept = 0;
  for (const uint8_t k : keep) {
    num_kept += k;
  }
  at::Tensor out = at::empty({num_kept}, order.options());
  int64_t* dst = out.data_ptr<int64_t>();
  for (int64_t r = 0; r < n; ++r) {
    if (keep[r]) {
      *dst++ = ord[r];
    }
  }
  return out;
}

at::Tensor run(const at::Tensor& boxes, const at::Tensor& order, const at::Tensor& ranks,
               const std::vector<int64_t>& offsets, double iou_threshold) {
  const at::Tensor b = nms::compute_boxes(boxes);
  return AT_DISPATCH_FLOATING_TYPES(b.scalar_type(), "detzoo_nms_cpu", [&] {
    return keep_groups<scalar_t>(b, order, ranks, offsets, iou_threshold);
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
