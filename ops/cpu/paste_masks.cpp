// CPU kernel of detzoo::paste_masks: Detectron2's paste_masks_in_image (CPU path).
//
// Each mask [Hm, Wm] is resampled into its box as F.grid_sample(align_corners=False, bilinear,
// zero padding) does for Detectron2's grid (the same sampling coordinates, bit for bit; the blend
// is rounded in another order, so a value may differ in its last bit), but only inside the box's
// integer extent [max(floor(x0) - 1, 0), min(ceil(x1) + 1, W)) x (same for y); the rest is 0.
// Bilinear sampling is separable, so per mask:
//   1. each extent column gets its two source columns and weights (a Tap), each extent row too;
//   2. every mask row is interpolated horizontally at the extent columns once (Hm x extent width);
//   3. every output row is a blend of two of those rows, thresholded straight into the output.
// Steps 1-2 run in parallel over masks, step 3 over all the extent rows of all the masks.
//
// The output is usually large (100 masks at 800x1216 are 97 MB) and mostly zeros. Writing the
// zeros into fresh memory costs a page fault per 4 KB page (~1 us each), more than the pasting
// itself, so large outputs are fresh anonymous mappings, which the OS guarantees to be zero
// (numpy.zeros gets the same from calloc): only the extents are written and the untouched pages
// never fault in for writing. Small outputs are allocated normally and get explicit zeros.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>
#include <torch/types.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>
#include <utility>
#include <vector>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace detzoo {
namespace {

// The output region [x0, x1) x [y0, y1) of one box; empty when x1 <= x0 or y1 <= y0.
struct Extent {
  int64_t x0 = 0, x1 = 0, y0 = 0, y1 = 0;
  int64_t width() const { return x1 > x0 ? x1 - x0 : 0; }
  int64_t height() const { return y1 > y0 ? y1 - y0 : 0; }
  bool empty() const { return width() == 0 || height() == 0; }
};

// max(floor(lo) - 1, 0) and min(ceil(hi) + 1, size), clamped to [0, size] before any integer
// conversion (so huge or infinite coordinates are safe).
inline int64_t extent_begin(double lo, int64_t size) {
  const double v = std::floor(lo) - 1;
  return v <= 0 ? 0 : (v >= static_cast<double>(size) ? size : static_cast<int64_t>(v));
}
inline int64_t extent_end(double hi, int64_t size) {
  const double v = std::ceil(hi) + 1;
  return v >= static_cast<double>(size) ? size : (v <= 0 ? 0 : static_cast<int64_t>(v));
}

// A box with a NaN coordinate pastes nothing.
template <typename T>
Extent extent_of(const T* box, int64_t height, int64_t width) {
  Extent e;
  if (std::isnan(box[0]) || std::isnan(box[1]) || std::isnan(box[2]) || std::isnan(box[3])) {
    return e;
  }
  e.x0 = extent_begin(box[0], width);
  e.x1 = extent_end(box[2], width);
  e.y0 = extent_begin(box[1], height);
  e.y1 = extent_end(box[3], height);
  return e;
}

// Two source indices and weights of one output column (or row); an out-of-range source gets
// weight 0 (zero padding). A non-finite coordinate (zero-size box) gets NaN weights, as
// grid_sample's result is NaN there.
template <typename T>
struct Tap {
  int64_t i0, i1;
  T w0, w1;
};

// Output pixel `p` (column or row index) of a box side [lo, hi] sampling a mask side of `size`
// pixels, with Detectron2's arithmetic: g = (p + 0.5 - lo) / (hi - lo) * 2 - 1, then
// grid_sample's unnormalisation (g + 1) * (size / 2) - 0.5 and bilinear weights.
template <typename T>
Tap<T> make_tap(int64_t p, T lo, T hi, int64_t size) {
  const T g = (static_cast<T>(p) + static_cast<T>(0.5) - lo) / (hi - lo) * 2 - 1;
  const T c = (g + 1) * (static_cast<T>(size) / 2) - static_cast<T>(0.5);
  if (!std::isfinite(c)) {
    const T nan = std::numeric_limits<T>::quiet_NaN();
    return {0, 0, nan, nan};
  }
  const T f = std::floor(c);
  const T w1 = c - f;
  const bool in0 = f >= 0 && f <= static_cast<T>(size - 1);
  const bool in1 = f >= -1 && f <= static_cast<T>(size - 2);
  const int64_t i = (in0 || in1) ? static_cast<int64_t>(f) : 0;
  return {in0 ? i : 0, in1 ? i + 1 : 0, in0 ? 1 - w1 : T(0), in1 ? w1 : T(0)};
}

// Per-mask tables, laid out back to back in shared buffers.
struct Layout {
  std::vector<Extent> extents;
  std::vector<int64_t> col_offset;  // into the column taps (extent widths summed)
  std::vector<int64_t> row_offset;  // into the row taps (extent heights summed)
  std::vector<int64_t> rows_offset;  // into the horizontally interpolated rows (Hm * width)
  std::vector<int64_t> row_mask;  // the mask of each row tap
  int64_t cols = 0, rows = 0, interp = 0;
};

template <typename T>
Layout make_layout(const T* boxes, int64_t n, int64_t mask_h, int64_t height, int64_t width) {
  Layout l;
  l.extents.resize(n);
  l.col_offset.resize(n);
  l.row_offset.resize(n);
  l.rows_offset.resize(n);
  for (int64_t k = 0; k < n; ++k) {
    Extent e = extent_of(boxes + 4 * k, height, width);
    if (e.empty()) {
      e = Extent{};
    }
    l.extents[k] = e;
    l.col_offset[k] = l.cols;
    l.row_offset[k] = l.rows;
    l.rows_offset[k] = l.interp;
    l.cols += e.width();
    l.rows += e.height();
    l.interp += mask_h * e.width();
    l.row_mask.insert(l.row_mask.end(), e.height(), k);
  }
  return l;
}

// bool output: value >= threshold; uint8 output: (value * 255).to(torch.uint8), i.e. truncated,
// wrapped through int64, NaN -> 0.
template <typename out_t, typename T>
inline out_t to_output(T v, T threshold) {
  if constexpr (std::is_same_v<out_t, bool>) {
    return v >= threshold;
  } else {
    const T scaled = v * 255;
    return std::isnan(scaled) ? out_t(0) : static_cast<out_t>(static_cast<int64_t>(scaled));
  }
}

// A CPU tensor of `sizes`, and whether it is already zero-filled (see the top of this file).
std::pair<at::Tensor, bool> new_output(at::IntArrayRef sizes, at::ScalarType dtype) {
#if defined(__linux__)
  constexpr size_t kMinMappedBytes = size_t{1} << 22;
  const size_t bytes = c10::multiply_integers(sizes) * c10::elementSize(dtype);
  if (bytes >= kMinMappedBytes) {
    void* data = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (data != MAP_FAILED) {
      at::Tensor out = at::from_blob(
          data, sizes, [bytes](void* p) { munmap(p, bytes); }, at::TensorOptions().dtype(dtype));
      return {out, true};
    }
  }
#endif
  return {at::empty(sizes, at::TensorOptions().dtype(dtype)), false};
}

template <typename scalar_t, typename T, typename out_t>
void paste_impl(const scalar_t* masks, const T* boxes, int64_t n, int64_t mask_h, int64_t mask_w,
                int64_t height, int64_t width, T threshold, bool zeroed, out_t* out) {
  const Layout l = make_layout(boxes, n, mask_h, height, width);
  std::vector<Tap<T>> col_taps(l.cols), row_taps(l.rows);
  std::vector<T> interp(l.interp);

  // Steps 1 and 2 (and the zeros outside the extent rows), one mask per task.
  at::parallel_for(0, n, 1, [&](int64_t begin, int64_t end) {
    for (int64_t k = begin; k < end; ++k) {
      const Extent& e = l.extents[k];
      if (!zeroed) {
        out_t* image = out + k * height * width;
        std::memset(image, 0, e.y0 * width * sizeof(out_t));
        std::memset(image + e.y1 * width, 0, (height - e.y1) * width * sizeof(out_t));
      }
      const T* b = boxes + 4 * k;
      Tap<T>* cols = col_taps.data() + l.col_offset[k];
      Tap<T>* rows = row_taps.data() + l.row_offset[k];
      for (int64_t j = 0; j < e.width(); ++j) {
        cols[j] = make_tap(e.x0 + j, b[0], b[2], mask_w);
      }
      for (int64_t i = 0; i < e.height(); ++i) {
        rows[i] = make_tap(e.y0 + i, b[1], b[3], mask_h);
      }
      const scalar_t* mask = masks + k * mask_h * mask_w;
      T* dst = interp.data() + l.rows_offset[k];
      for (int64_t r = 0; r < mask_h; ++r) {
        const scalar_t* src = mask + r * mask_w;
        for (int64_t j = 0; j < e.width(); ++j) {
          const Tap<T>& t = cols[j];
          dst[r * e.width() + j] =
              t.w0 * static_cast<T>(src[t.i0]) + t.w1 * static_cast<T>(src[t.i1]);
        }
      }
    }
  });

  // Step 3, one extent row per iteration (all the masks' extent rows back to back).
  constexpr int64_t kRowsPerTask = 16;
  at::parallel_for(0, l.rows, kRowsPerTask, [&](int64_t begin, int64_t end) {
    for (int64_t q = begin; q < end; ++q) {
      const int64_t k = l.row_mask[q];
      const Extent& e = l.extents[k];
      const int64_t y = e.y0 + (q - l.row_offset[k]);
      out_t* row = out + (k * height + y) * width;
      if (!zeroed) {
        std::memset(row, 0, e.x0 * sizeof(out_t));
        std::memset(row + e.x1, 0, (width - e.x1) * sizeof(out_t));
      }
      const Tap<T>& t = row_taps[q];
      const T* a = interp.data() + l.rows_offset[k] + t.i0 * e.width();
      const T* b = interp.data() + l.rows_offset[k] + t.i1 * e.width();
      out_t* dst = row + e.x0;
      for (int64_t j = 0; j < e.width(); ++j) {
        dst[j] = to_output<out_t>(t.w0 * a[j] + t.w1 * b[j], threshold);
      }
    }
  });
}

at::Tensor paste_masks_cpu(const at::Tensor& masks, const at::Tensor& boxes, int64_t height,
                           int64_t width, double threshold) {
  TORCH_CHECK(masks.dim() == 3, "paste_masks: masks must be [N, Hm, Wm], got ", masks.sizes());
  TORCH_CHECK(boxes.dim() == 2 && boxes.size(1) == 4 && boxes.size(0) == masks.size(0),
              "paste_masks: boxes must be [N, 4] with N = ", masks.size(0), ", got ",
              boxes.sizes());
  TORCH_CHECK(masks.is_floating_point() && boxes.is_floating_point(),
              "paste_masks: masks and boxes must be floating point, got ", masks.scalar_type(),
              " and ", boxes.scalar_type());
  TORCH_CHECK(height >= 0 && width >= 0, "paste_masks: height and width must be >= 0, got ",
              height, " and ", width);
  const int64_t n = masks.size(0);
  const bool binary = threshold >= 0;
  auto [out, zeroed] = new_output({n, height, width}, binary ? at::kBool : at::kByte);
  if (out.numel() == 0) {
    return out;
  }
  TORCH_CHECK(masks.size(1) > 0 && masks.size(2) > 0, "paste_masks: masks must not be empty, got ",
              masks.sizes());
  const bool dbl = masks.scalar_type() == at::kDouble || boxes.scalar_type() == at::kDouble;
  const at::Tensor m = masks.contiguous();
  const at::Tensor b = boxes.to(dbl ? at::kDouble : at::kFloat).contiguous();
  const auto mask_type = m.scalar_type();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, mask_type, "paste_masks_cpu", [&] {
    auto run = [&](auto zero, auto* dst) {
      using T = decltype(zero);
      paste_impl(m.data_ptr<scalar_t>(), b.data_ptr<T>(), n, m.size(1), m.size(2), height, width,
                 static_cast<T>(threshold), zeroed, dst);
    };
    if (binary) {
      dbl ? run(0.0, out.data_ptr<bool>()) : run(0.0f, out.data_ptr<bool>());
    } else {
      dbl ? run(0.0, out.data_ptr<uint8_t>()) : run(0.0f, out.data_ptr<uint8_t>());
    }
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(detzoo, CPU, m) {
  m.impl("paste_masks", &paste_masks_cpu);
}

}  // namespace detzoo
