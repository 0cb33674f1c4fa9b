// CPU kernels of detzoo::roi_align / _roi_align_backward (torchvision / Detectron2 ROIAlign), also
// used by roi_align_rotated (ops/cpu/roi_align_rotated.cpp).
//
// Both passes work on channels-last features [B, H, W, C] in the accumulation type (float for
// half / bfloat16): the geometry of a sample (position, 4 neighbours, weights) is computed once and
// applied to all channels at once, in contiguous, vectorisable loops.
//   * forward: parallel over rois (each roi writes its own output rows);
//   * backward: parallel over (image, channel slice): a thread owns a slice of grad_input's
//     channels and walks every roi of that image, so no two threads write the same value (no
//     atomics, deterministic).
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/core/ScalarType.h>
#include <torch/library.h>

#include <algorithm>
#include <array>
#include <vector>

#include "cpu/roi_align_cpu.h"
#include "roi_align_checks.h"

namespace detzoo {
namespace {

// Channels per backward work item: 16 floats = one 64-byte cache line, so two threads never
// write to the same line of grad_input.
constexpr int64_t kChannelBlock = 16;

// Checks that need the rois' values; `boxes` is contiguous, in the accumulation type.
template <typename T>
void check_roi_values(const T* boxes, int64_t num_rois, int64_t batch_size, const roi::Params& p) {
  const int64_t cols = roi::roi_columns(p);
  for (int64_t k = 0; k < num_rois; ++k) {
    const T* r = boxes + k * cols;
    const T b = r[0];
    const bool integer = b == static_cast<T>(static_cast<int64_t>(b));
    TORCH_CHECK(b >= 0 && b < static_cast<T>(batch_size) && integer,
                roi::op_name(p), ": roi ", k, " has batch index ", b, ", outside [0, ", batch_size,
                ") (the input's batch size); column 0 of the rois is the image index");
    TORCH_CHECK(!p.rotated || (r[3] >= 0 && r[4] >= 0), roi::op_name(p), ": roi ", k,
                " has negative size (w, h) = (", r[3], ", ", r[4],
                "); rotated rois need w >= 0 and h >= 0");
  }
}

// Calls f(b) with the bilinear neighbours of every in-map sample of bin (ph, pw).
template <typename T, typename F>
inline void for_each_sample(const roi::Grid<T>& g, int64_t ph, int64_t pw, int64_t height,
                            int64_t width, F&& f) {
  for (int iy = 0; iy < g.grid_h; ++iy) {
    for (int ix = 0; ix < g.grid_w; ++ix) {
      T y, x;
      roi::sample_point(g, ph, pw, iy, ix, y, x);
      if (y < static_cast<T>(-1) || y > static_cast<T>(height) || x < static_cast<T>(-1) ||
          x > static_cast<T>(width)) {
        continue;  // reads 0
      }
      f(roi::bilinear(height, width, y, x));
    }
  }
}

template <typename scalar_t>
void forward_kernel(const at::Tensor& feats, const at::Tensor& boxes, const roi::Params& p,
                    at::Tensor& output) {
  using T = at::opmath_type<scalar_t>;
  const int64_t num_rois = boxes.size(0), channels = feats.size(1);
  const int64_t height = feats.size(2), width = feats.size(3);
  const int64_t ph_n = p.pooled_height, pw_n = p.pooled_width, bins = ph_n * pw_n;
  const int64_t cols = roi::roi_columns(p);
  const T* data = feats.const_data_ptr<T>();  // channels last
  const T* rois = boxes.const_data_ptr<T>();
  scalar_t* out = output.data_ptr<scalar_t>();
  at::parallel_for(0, num_rois, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> acc(channels);
    for (int64_t k = begin; k < end; ++k) {
      const roi::Grid<T> g = roi::make_grid<T>(rois + k * cols, p);
      const T* image = data + g.batch * height * width * channels;
      scalar_t* out_k = out + k * channels * bins;
      for (int64_t ph = 0; ph < ph_n; ++ph) {
        for (int64_t pw = 0; pw < pw_n; ++pw) {
          std::fill(acc.begin(), acc.end(), T(0));
          T* a = acc.data();
          for_each_sample(g, ph, pw, height, width, [&](const roi::Bilinear<T>& s) {
            const T* v1 = image + s.o1 * channels;
            const T* v2 = image + s.o2 * channels;
            const T* v3 = image + s.o3 * channels;
            const T* v4 = image + s.o4 * channels;
            for (int64_t c = 0; c < channels; ++c) {
              a[c] += s.w1 * v1[c] + s.w2 * v2[c] + s.w3 * v3[c] + s.w4 * v4[c];
            }
          });
          scalar_t* o = out_k + ph * pw_n + pw;
          for (int64_t c = 0; c < channels; ++c) {
            o[c * bins] = static_cast<scalar_t>(a[c] / g.count);
          }
        }
      }
    }
  });
}

// Adds w * g[0:n] to dst[0:n].
template <typename T>
inline void axpy(T* __restrict__ dst, const T* __restrict__ g, T w, int64_t n) {
  for (int64_t c = 0; c < n; ++c) {
    dst[c] += w * g[c];
  }
}

template <typename T>
void backward_kernel(const at::Tensor& grad, const at::Tensor& boxes, const roi::Params& p,
                     at::Tensor& grad_input) {
  const int64_t num_rois = boxes.size(0), batch_size = grad_input.size(0);
  const int64_t height = grad_input.size(1), width = grad_input.size(2);
  const int64_t channels = grad_input.size(3);
  const int64_t ph_n = p.pooled_height, pw_n = p.pooled_width, bins = ph_n * pw_n;
  const int64_t cols = roi::roi_columns(p);
  const T* go = grad.const_data_ptr<T>();
  const T* rois = boxes.const_data_ptr<T>();
  T* gi = grad_input.data_ptr<T>();  // channels last

  // Rois of each image, so a work item (image, channel slice) visits only its own.
  std::vector<std::vector<int64_t>> rois_of(batch_size);
  for (int64_t k = 0; k < num_rois; ++k) {
    rois_of[static_cast<int64_t>(rois[k * cols])].push_back(k);
  }
  const int64_t blocks = (channels + kChannelBlock - 1) / kChannelBlock;
  at::parallel_for(0, batch_size * blocks, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> gbin(channels);
    // Consecutive items of one image form a single channel range [c0, c1).
    for (int64_t item = begin; item < end;) {
      const int64_t b = item / blocks;
      const int64_t last = std::min(end, (b + 1) * blocks);
      const int64_t c0 = (item % blocks) * kChannelBlock;
      const int64_t c1 = std::min(channels, ((last - 1) % blocks + 1) * kChannelBlock);
      const int64_t n = c1 - c0;
      item = last;
      T* image = gi + b * height * width * channels + c0;
      for (int64_t k : rois_of[b]) {
        const roi::Grid<T> g = roi::make_grid<T>(rois + k * cols, p);
        const T* go_k = go + (k * channels + c0) * bins;
        for (int64_t ph = 0; ph < ph_n; ++ph) {
          for (int64_t pw = 0; pw < pw_n; ++pw) {
            const int64_t bin = ph * pw_n + pw;
            for (int64_t c = 0; c < n; ++c) {
              gbin[c] = go_k[c * bins + bin] / g.count;
            }
            const T* gb = gbin.data();
            for_each_sample(g, ph, pw, height, width, [&](const roi::Bilinear<T>& s) {
              axpy(image + s.o1 * channels, gb, s.w1, n);
              axpy(image + s.o2 * channels, gb, s.w2, n);
              axpy(image + s.o3 * channels, gb, s.w3, n);
              axpy(image + s.o4 * channels, gb, s.w4, n);
            });
          }
        }
      }
    }
  });
}

at::ScalarType acc_type_of(at::ScalarType t) {
  return t == at::kDouble ? at::kDouble : at::kFloat;  // opmath: float for float/half/bfloat16
}

}  // namespace

at::Tensor roi_align_forward_cpu(const at::Tensor& input, const at::Tensor& rois,
                                 const roi::Params& p) {
  roi::check_forward(input, rois, p);
  TORCH_CHECK(input.device().is_cpu(), roi::op_name(p), ": expected CPU tensors, got ",
              input.device());
  const int64_t num_rois = rois.size(0), channels = input.size(1);
  const at::ScalarType acc = acc_type_of(input.scalar_type());
  const at::Tensor boxes = rois.to(acc).contiguous();
  AT_DISPATCH_FLOATING_TYPES(acc, "roi_align_check", [&] {
    check_roi_values(boxes.const_data_ptr<scalar_t>(), num_rois, input.size(0), p);
  });
  const std::array<int64_t, 4> shape{num_rois, channels, p.pooled_height, p.pooled_width};
  if (input.numel() == 0) {
    return at::zeros(shape, input.options());  // H or W is 0: every sample is outside
  }
  at::Tensor output = at::empty(shape, input.options());  // the kernel writes every value
  if (output.numel() == 0) {
    return output;
  }
  // [B, C, H, W] sizes, channels-last memory: a view of [B, H, W, C] rows of C values (one copy,
  // none when the input already is float channels-last).
  const at::Tensor feats = input.to(acc, /*non_blocking=*/false, /*copy=*/false,
                                    at::MemoryFormat::ChannelsLast);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "roi_align_cpu",
                                  [&] { forward_kernel<scalar_t>(feats, boxes, p, output); });
  return output;
}

at::Tensor roi_align_backward_cpu(const at::Tensor& grad, const at::Tensor& rois,
                                  const roi::Params& p, int64_t batch_size, int64_t channels,
                                  int64_t height, int64_t width) {
  roi::check_backward(grad, rois, p, channels);
  TORCH_CHECK(grad.device().is_cpu(), roi::op_name(p), ": expected CPU tensors, got ",
              grad.device());
  const at::ScalarType acc = acc_type_of(grad.scalar_type());
  const at::Tensor boxes = rois.to(acc).contiguous();
  AT_DISPATCH_FLOATING_TYPES(acc, "roi_align_check", [&] {
    check_roi_values(boxes.const_data_ptr<scalar_t>(), rois.size(0), batch_size, p);
  });
  at::Tensor grad_input =
      at::zeros({batch_size, height, width, channels}, grad.options().dtype(acc));
  if (grad.numel() > 0 && grad_input.numel() > 0) {
    const at::Tensor g = grad.to(acc).contiguous();
    AT_DISPATCH_FLOATING_TYPES(acc, "roi_align_backward_cpu",
                               [&] { backward_kernel<scalar_t>(g, boxes, p, grad_input); });
  }
  return grad_input.permute({0, 3, 1, 2})
      .to(grad.scalar_type(), /*non_blocking=*/false, /*copy=*/false, at::MemoryFormat::Contiguous);
}

namespace {

at::Tensor roi_align_cpu(const at::Tensor& input, const at::Tensor& rois, double spatial_scale,
                         int64_t pooled_height, int64_t pooled_width, int64_t sampling_ratio,
                         bool aligned) {
  return roi_align_forward_cpu(
      input, rois, {spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned, false});
}

at::Tensor roi_align_backward_cpu_op(const at::Tensor& grad, const at::Tensor& rois,
                                     double spatial_scale, int64_t pooled_height,
                                     int64_t pooled_width, int64_t batch_size, int64_t channels,
                                     int64_t height, int64_t width, int64_t sampling_ratio,
                                     bool aligned) {
  return roi_align_backward_cpu(
      grad, rois, {spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned, false},
      batch_size, channels, height, width);
}

}  // namespace

TORCH_LIBRARY_IMPL(detzoo, CPU, m) {
  m.impl("roi_align", &roi_align_cpu);
  m.impl("_roi_align_backward", &roi_align_backward_cpu_op);
}

}  // namespace detzoo
