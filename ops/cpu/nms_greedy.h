// The blocked greedy pass shared by the CPU kernels of nms / batched_nms (ops/cpu/nms.cpp) and
// nms_rotated (ops/cpu/nms_rotated.cpp). The kernels differ only in their boxes and in the test
// "does kept box i suppress box j", which a Boxes policy supplies (see below).
//
// The pass is the plain greedy one (visit by score, each kept box suppresses the later boxes it
// overlaps too much), reorganised for speed:
// - the boxes of a group are gathered in score order into the policy's arrays (structure of
//   arrays, so the policy's suppression test can be a branch-free vectorised loop);
// - boxes are resolved in blocks of kBlock: the block is resolved serially, then its kept boxes
//   suppress the rest of the boxes in one parallel sweep (one fork/join per block, not per box);
// - after each block, suppressed boxes are dropped from the arrays, so later sweeps skip them;
// - keep_groups runs independent groups (batched_nms categories) in parallel (a group with many
//   boxes parallelises its own sweeps instead).
// The result does not depend on the thread count: a sweep only sets flags, each from an exact
// per-pair test, and every flag a box's fate depends on is set before the box is visited.
//
// A Boxes policy is a movable type with
//   using Scalar = float or double;          // the compute dtype of the boxes
//   int64_t size() const;                    // boxes gathered
//   void move(int64_t from, int64_t to);     // box `to` = box `from` (to <= from), for compaction
//   void sweep(const int64_t* kept, int64_t num_kept, int64_t lo, int64_t hi,
//              Flag<Scalar>* suppressed) const;
// where sweep sets suppressed[j] = 1 for every j in [lo, hi) that some kept box kept[0..num_kept)
// (indices into the same arrays, all < lo) suppresses, and leaves the other flags as they are.
// The flags have the width of Scalar so that they share vector lanes with coordinates.
#pragma once

#include <ATen/Parallel.h>
#include <torch/types.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <utility>
#include <vector>

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
namespace greedy {

constexpr int64_t kBlock = 128;  // boxes resolved serially before their kept boxes sweep the rest
constexpr int64_t kTile = 256;   // swept boxes per tile (stays in L1 while the kept boxes pass)
constexpr int64_t kMinPairsPerTask = 1 << 15;  // pair tests per task of a parallel sweep
constexpr int64_t kLargeGroup = 4096;  // groups this big parallelise inside, not across

// Suppression flag with the width of T, so flags and coordinates share vector lanes.
template <typename T>
using Flag = std::conditional_t<sizeof(T) == 8, int64_t, int32_t>;

// The boxes of one group still in play, in score order.
template <typename Boxes>
struct Candidates {
  using F = Flag<typename Boxes::Scalar>;
  Boxes boxes;
  std::vector<int64_t> rank;  // position of each box in the global score order
  std::vector<F> suppressed;
  int64_t size;

  Candidates(Boxes b, const int64_t* ranks)
      : boxes(std::move(b)), rank(ranks, ranks + boxes.size()), suppressed(boxes.size(), 0),
        size(boxes.size()) {}

  // Drops the suppressed boxes of [from, size), keeping the order of the others.
  void compact(int64_t from) {
    int64_t out = from;
    for (int64_t k = from; k < size; ++k) {
      if (suppressed[k]) {
        continue;
      }
      if (out != k) {
        boxes.move(k, out);
        rank[out] = rank[k];
      }
      suppressed[out] = 0;
      ++out;
    }
    size = out;
  }
};

// Greedy NMS of one group; sets keep[rank] = 1 for its kept boxes.
template <typename Boxes>
void run_greedy(Candidates<Boxes>& c, uint8_t* keep) {
  std::vector<int64_t> kept;
  kept.reserve(kBlock);
  for (int64_t start = 0; start < c.size;) {
    const int64_t end = std::min(start + kBlock, c.size);
    kept.clear();
    for (int64_t p = start; p < end; ++p) {
      if (!c.suppressed[p]) {
        kept.push_back(p);
        keep[c.rank[p]] = 1;
        c.boxes.sweep(&p, 1, p + 1, end, c.suppressed.data());
      }
    }
    const auto num_kept = static_cast<int64_t>(kept.size());
    const int64_t grain = std::max(kTile, kMinPairsPerTask / std::max<int64_t>(num_kept, 1));
    at::parallel_for(end, c.size, grain, [&](int64_t lo, int64_t hi) {
      c.boxes.sweep(kept.data(), num_kept, lo, hi, c.suppressed.data());
    });
    c.compact(end);
    start = end;
  }
}

// Runs the greedy pass on each group of ranks ranks[offsets[g]..offsets[g+1]) (ranks into
// `order`, ascending within a group) and returns the kept boxes' indices by increasing rank.
// make_boxes(group_ranks, count) gathers the boxes order[group_ranks[0..count)] into a Boxes.
template <typename Boxes, typename MakeBoxes>
at::Tensor keep_groups(const at::Tensor& order, const at::Tensor& ranks,
                       const std::vector<int64_t>& offsets, const MakeBoxes& make_boxes) {
  const int64_t n = order.size(0);
  const int64_t* ord = order.data_ptr<int64_t>();
  const int64_t* rk = ranks.data_ptr<int64_t>();
  std::vector<uint8_t> keep(n, 0);
  auto run_group = [&](size_t g) {
    const int64_t* group = rk + offsets[g];
    Candidates<Boxes> c(make_boxes(group, offsets[g + 1] - offsets[g]), group);
    run_greedy(c, keep.data());
  };
  const size_t num_groups = offsets.empty() ? 0 : offsets.size() - 1;
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

}  // namespace greedy
}  // namespace detzoo
