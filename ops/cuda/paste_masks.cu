// CUDA kernel of detzoo::paste_masks: Detectron2's paste_masks_in_image, with the CPU path's
// per-box extent [max(floor(x0) - 1, 0), min(ceil(x1) + 1, W)) x (same for y) on the GPU too,
// so both devices give the same masks (Detectron2's GPU path samples the whole image instead).
//
// One thread per output pixel: outside its box's extent it writes 0, inside it samples the mask
// bilinearly (grid_sample, align_corners=False, zero padding) with the same operations, in the
// same order and rounding (no FMA contraction), as ops/cpu/paste_masks.cpp.
#include <ATen/Dispatch.h>
#include <ATen/cuda/CUDAContext.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <type_traits>

namespace detzoo {
namespace {

constexpr int kThreads = 256;

// Correctly rounded arithmetic that the compiler may not fuse into FMAs.
__device__ __forceinline__ float add_rn(float a, float b) { return __fadd_rn(a, b); }
__device__ __forceinline__ double add_rn(double a, double b) { return __dadd_rn(a, b); }
__device__ __forceinline__ float sub_rn(float a, float b) { return __fsub_rn(a, b); }
__device__ __forceinline__ double sub_rn(double a, double b) { return __dsub_rn(a, b); }
__device__ __forceinline__ float mul_rn(float a, float b) { return __fmul_rn(a, b); }
__device__ __forceinline__ double mul_rn(double a, double b) { return __dmul_rn(a, b); }
__device__ __forceinline__ float div_rn(float a, float b) { return __fdiv_rn(a, b); }
__device__ __forceinline__ double div_rn(double a, double b) { return __ddiv_rn(a, b); }

// max(floor(lo) - 1, 0) and min(ceil(hi) + 1, size), clamped before any integer conversion.
__device__ __forceinline__ int64_t extent_begin(double lo, int64_t size) {
  const double v = floor(lo) - 1;
  return v <= 0 ? 0 : (v >= static_cast<double>(size) ? size : static_cast<int64_t>(v));
}
__device__ __forceinline__ int64_t extent_end(double hi, int64_t size) {
  const double v = ceil(hi) + 1;
  return v >= static_cast<double>(size) ? size : (v <= 0 ? 0 : static_cast<int64_t>(v));
}

// Whether pixel p lies in the extent of the box side [lo, hi] (never, for a NaN side).
template <typename T>
__device__ __forceinline__ bool in_extent(int64_t p, T lo, T hi, int64_t size) {
  if (isnan(lo) || isnan(hi)) {
    return false;
  }
  return p >= extent_begin(lo, size) && p < extent_end(hi, size);
}

// Two source indices and weights of output pixel p along one axis; out-of-range sources get
// weight 0, a non-finite coordinate (zero-size box) NaN weights (grid_sample gives NaN there).
template <typename T>
struct Tap {
  int64_t i0, i1;
  T w0, w1;
};

template <typename T>
__device__ __forceinline__ Tap<T> make_tap(int64_t p, T lo, T hi, int64_t size) {
  const T pixel = add_rn(static_cast<T>(p), static_cast<T>(0.5));
  const T g = sub_rn(mul_rn(div_rn(sub_rn(pixel, lo), sub_rn(hi, lo)), T(2)), T(1));
  const T c = sub_rn(mul_rn(add_rn(g, T(1)), static_cast<T>(size) / 2), static_cast<T>(0.5));
  if (!isfinite(c)) {
    const T nan = std::numeric_limits<T>::quiet_NaN();
    return {0, 0, nan, nan};
  }
  const T f = floor(c);
  const T w1 = sub_rn(c, f);
  const bool in0 = f >= 0 && f <= static_cast<T>(size - 1);
  const bool in1 = f >= -1 && f <= static_cast<T>(size - 2);
  const int64_t i = (in0 || in1) ? static_cast<int64_t>(f) : 0;
  return {in0 ? i : 0, in1 ? i + 1 : 0, in0 ? sub_rn(T(1), w1) : T(0), in1 ? w1 : T(0)};
}

template <typename out_t, typename T>
__device__ __forceinline__ out_t to_output(T v, T threshold) {
  if constexpr (std::is_same_v<out_t, bool>) {
    return v >= threshold;
  } else {
    const T scaled = mul_rn(v, T(255));  // Tensor.to(uint8): truncate, wrap through int64
    return isnan(scaled) ? out_t(0) : static_cast<out_t>(static_cast<int64_t>(scaled));
  }
}

template <typename scalar_t, typename T>
__device__ __forceinline__ T read(const scalar_t* mask, int64_t mask_w, int64_t row, int64_t col) {
  return static_cast<T>(mask[row * mask_w + col]);
}

template <typename scalar_t, typename T, typename out_t>
__global__ void paste_kernel(int64_t total, const scalar_t* __restrict__ masks,
                             const T* __restrict__ boxes, int64_t mask_h, int64_t mask_w,
                             int64_t height, int64_t width, T threshold, out_t* __restrict__ out) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    const int64_t x = i % width;
    const int64_t y = (i / width) % height;
    const int64_t k = i / (width * height);
    const T* b = boxes + 4 * k;
    if (!in_extent(x, b[0], b[2], width) || !in_extent(y, b[1], b[3], height)) {
      out[i] = out_t(0);
      continue;
    }
    const Tap<T> tx = make_tap(x, b[0], b[2], mask_w);
    const Tap<T> ty = make_tap(y, b[1], b[3], mask_h);
    const scalar_t* mask = masks + k * mask_h * mask_w;
    const T top = add_rn(mul_rn(tx.w0, read<scalar_t, T>(mask, mask_w, ty.i0, tx.i0)),
                         mul_rn(tx.w1, read<scalar_t, T>(mask, mask_w, ty.i0, tx.i1)));
    const T bottom = add_rn(mul_rn(tx.w0, read<scalar_t, T>(mask, mask_w, ty.i1, tx.i0)),
                            mul_rn(tx.w1, read<scalar_t, T>(mask, mask_w, ty.i1, tx.i1)));
    out[i] = to_output<out_t>(add_rn(mul_rn(ty.w0, top), mul_rn(ty.w1, bottom)), threshold);
  }
}

at::Tensor paste_masks_cuda(const at::Tensor& masks, const at::Tensor& boxes, int64_t height,
                            int64_t width, double threshold) {
  TORCH_CHECK(masks.dim() == 3, "paste_masks: masks must be [N, Hm, Wm], got ", masks.sizes());
  TORCH_CHECK(boxes.dim() == 2 && boxes.size(1) == 4 && boxes.size(0) == masks.size(0),
              "paste_masks: boxes must be [N, 4] with N = ", masks.size(0), ", got ",
              boxes.sizes());
  TORCH_CHECK(masks.is_floating_point() && boxes.is_floating_point(),
              "paste_masks: masks and boxes must be floating point, got ", masks.scalar_type(),
              " and ", boxes.scalar_type());
  TORCH_CHECK(boxes.device() == masks.device(), "paste_masks: masks are on ", masks.device(),
              " but boxes on ", boxes.device());
  TORCH_CHECK(height >= 0 && width >= 0, "paste_masks: height and width must be >= 0, got ",
              height, " and ", width);
  c10::cuda::CUDAGuard guard(masks.device());
  const int64_t n = masks.size(0);
  const bool binary = threshold >= 0;
  at::Tensor out =
      at::empty({n, height, width}, masks.options().dtype(binary ? at::kBool : at::kByte));
  const int64_t total = out.numel();
  if (total == 0) {
    return out;
  }
  TORCH_CHECK(masks.size(1) > 0 && masks.size(2) > 0, "paste_masks: masks must not be empty, got ",
              masks.sizes());
  const bool dbl = masks.scalar_type() == at::kDouble || boxes.scalar_type() == at::kDouble;
  const at::Tensor m = masks.contiguous();
  const at::Tensor b = boxes.to(dbl ? at::kDouble : at::kFloat).contiguous();
  const int64_t blocks = std::min<int64_t>((total + kThreads - 1) / kThreads, int64_t{1} << 20);
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  const auto mask_type = m.scalar_type();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, mask_type, "paste_masks_cuda", [&] {
    auto launch = [&](auto zero, auto* dst) {
      using T = decltype(zero);
      using out_t = std::remove_pointer_t<decltype(dst)>;
      paste_kernel<scalar_t, T, out_t><<<blocks, kThreads, 0, stream>>>(
          total, m.data_ptr<scalar_t>(), b.data_ptr<T>(), m.size(1), m.size(2), height, width,
          static_cast<T>(threshold), dst);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    };
    if (binary) {
      dbl ? launch(0.0, out.data_ptr<bool>()) : launch(0.0f, out.data_ptr<bool>());
    } else {
      dbl ? launch(0.0, out.data_ptr<uint8_t>()) : launch(0.0f, out.data_ptr<uint8_t>());
    }
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(detzoo, CUDA, m) {
  m.impl("paste_masks", &paste_masks_cuda);
}

}  // namespace detzoo
