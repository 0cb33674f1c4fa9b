// CUDA kernels of detzoo::roi_align / _roi_align_backward (torchvision / Detectron2 ROIAlign), also
// used by roi_align_rotated (ops/cuda/roi_align_rotated.cu).
//
// One thread per output value (roi, channel, bin): it averages the bin's bilinear samples in the
// accumulation type (float for half / bfloat16). The backward pass scatters each output gradient
// to the 4 neighbours of every sample with atomic adds into a float (double for double) buffer.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/Atomic.cuh>
#include <ATen/cuda/CUDAContext.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <algorithm>

#include "cuda/roi_align_cuda.h"
#include "roi_align_checks.h"

namespace detzoo {
namespace {

constexpr int kThreads = 256;

int64_t blocks_for(int64_t n) {
  return std::min<int64_t>((n + kThreads - 1) / kThreads, int64_t{1} << 16);
}

// Index -> (roi k, channel c, bin ph, bin pw) of a [K, C, PH, PW] tensor.
struct OutputIndex {
  int64_t k, c, ph, pw;
};

__device__ __forceinline__ OutputIndex unravel(int64_t i, int64_t channels, const roi::Params& p) {
  OutputIndex o;
  o.pw = i % p.pooled_width;
  o.ph = (i / p.pooled_width) % p.pooled_height;
  o.c = (i / (p.pooled_width * p.pooled_height)) % channels;
  o.k = i / (p.pooled_width * p.pooled_height * channels);
  return o;
}

template <typename scalar_t, typename T>
__global__ void forward_kernel(int64_t total, const scalar_t* __restrict__ input,
                               const T* __restrict__ rois, roi::Params p, int64_t batch_size,
                               int64_t channels, int64_t height, int64_t width,
                               scalar_t* __restrict__ output) {
  const int64_t cols = roi::roi_columns(p);
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    const OutputIndex o = unravel(i, channels, p);
    const roi::Grid<T> g = roi::make_grid<T>(rois + o.k * cols, p);
    T sum = 0;
    if (g.batch >= 0 && g.batch < batch_size) {
      const scalar_t* plane = input + (g.batch * channels + o.c) * height * width;
      for (int iy = 0; iy < g.grid_h; ++iy) {
        for (int ix = 0; ix < g.grid_w; ++ix) {
          T y, x;
          roi::sample_point(g, o.ph, o.pw, iy, ix, y, x);
          const roi::Bilinear<T> b = roi::bilinear(height, width, y, x);
          sum += b.w1 * static_cast<T>(plane[b.o1]) + b.w2 * static_cast<T>(plane[b.o2]) +
                 b.w3 * static_cast<T>(plane[b.o3]) + b.w4 * static_cast<T>(plane[b.o4]);
        }
      }
    }
    output[i] = static_cast<scalar_t>(sum / g.count);
  }
}

template <typename scalar_t, typename T>
__global__ void backward_kernel(int64_t total, const scalar_t* __restrict__ grad,
                                const T* __restrict__ rois, roi::Params p, int64_t batch_size,
                                int64_t channels, int64_t height, int64_t width,
                                T* __restrict__ grad_input) {
  const int64_t cols = roi::roi_columns(p);
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    const OutputIndex o = unravel(i, channels, p);
    const roi::Grid<T> g = roi::make_grid<T>(rois + o.k * cols, p);
    if (g.batch < 0 || g.batch >= batch_size) {
      continue;
    }
    T* plane = grad_input + (g.batch * channels + o.c) * height * width;
    const T gbin = static_cast<T>(grad[i]) / g.count;
    for (int iy = 0; iy < g.grid_h; ++iy) {
      for (int ix = 0; ix < g.grid_w; ++ix) {
        T y, x;
        roi::sample_point(g, o.ph, o.pw, iy, ix, y, x);
        if (y < static_cast<T>(-1) || y > static_cast<T>(height) || x < static_cast<T>(-1) ||
            x > static_cast<T>(width)) {
          continue;
        }
        const roi::Bilinear<T> b = roi::bilinear(height, width, y, x);
        gpuAtomicAdd(plane + b.o1, gbin * b.w1);
        gpuAtomicAdd(plane + b.o2, gbin * b.w2);
        gpuAtomicAdd(plane + b.o3, gbin * b.w3);
        gpuAtomicAdd(plane + b.o4, gbin * b.w4);
      }
    }
  }
}

at::ScalarType acc_type_of(at::ScalarType t) {
  return t == at::kDouble ? at::kDouble : at::kFloat;
}

}  // namespace

at::Tensor roi_align_forward_cuda(const at::Tensor& input, const at::Tensor& rois,
                                  const roi::Params& p) {
  roi::check_forward(input, rois, p);
  TORCH_CHECK(input.is_cuda(), roi::op_name(p), ": expected CUDA tensors, got ", input.device());
  c10::cuda::CUDAGuard guard(input.device());
  const int64_t channels = input.size(1), height = input.size(2), width = input.size(3);
  at::Tensor output =
      at::zeros({rois.size(0), channels, p.pooled_height, p.pooled_width}, input.options());
  const int64_t total = output.numel();
  if (total == 0 || input.numel() == 0) {
    return output;
  }
  const at::Tensor feats = input.contiguous();
  const at::Tensor boxes = rois.to(acc_type_of(input.scalar_type())).contiguous();
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, input.scalar_type(), "roi_align_cuda", [&] {
        using T = at::opmath_type<scalar_t>;
        forward_kernel<scalar_t, T><<<blocks_for(total), kThreads, 0, stream>>>(
            total, feats.const_data_ptr<scalar_t>(), boxes.const_data_ptr<T>(), p, input.size(0),
            channels, height, width, output.data_ptr<scalar_t>());
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
  return output;
}

at::Tensor roi_align_backward_cuda(const at::Tensor& grad, const at::Tensor& rois,
                                   const roi::Params& p, int64_t batch_size, int64_t channels,
                                   int64_t height, int64_t width) {
  roi::check_backward(grad, rois, p, channels);
  TORCH_CHECK(grad.is_cuda(), roi::op_name(p), ": expected CUDA tensors, got ", grad.device());
  c10::cuda::CUDAGuard guard(grad.device());
  const at::ScalarType acc = acc_type_of(grad.scalar_type());
  at::Tensor grad_input =
      at::zeros({batch_size, channels, height, width}, grad.options().dtype(acc));
  const int64_t total = grad.numel();
  if (total > 0 && grad_input.numel() > 0) {
    const at::Tensor g = grad.contiguous();
    const at::Tensor boxes = rois.to(acc).contiguous();
    cudaStream_t stream = at::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES_AND2(
        at::kHalf, at::kBFloat16, grad.scalar_type(), "roi_align_backward_cuda", [&] {
          using T = at::opmath_type<scalar_t>;
          backward_kernel<scalar_t, T><<<blocks_for(total), kThreads, 0, stream>>>(
              total, g.const_data_ptr<scalar_t>(), boxes.const_data_ptr<T>(), p, batch_size,
              channels, height, width, grad_input.data_ptr<T>());
          C10_CUDA_KERNEL_LAUNCH_CHECK();
        });
  }
  return grad_input.to(grad.scalar_type());
}

namespace {

at::Tensor roi_align_cuda(const at::Tensor& input, const at::Tensor& rois, double spatial_scale,
                          int64_t pooled_height, int64_t pooled_width, int64_t sampling_ratio,
                          bool aligned) {
  return roi_align_forward_cuda(
      input, rois, {spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned, false});
}

at::Tensor roi_align_backward_cuda_op(const at::Tensor& grad, const at::Tensor& rois,
                                      double spatial_scale, int64_t pooled_height,
                                      int64_t pooled_width, int64_t batch_size, int64_t channels,
                                      int64_t height, int64_t width, int64_t sampling_ratio,
                                      bool aligned) {
  return roi_align_backward_cuda(
      grad, rois, {spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned, false},
      batch_size, channels, height, width);
}

}  // namespace

TORCH_LIBRARY_IMPL(detzoo, CUDA, m) {
  m.impl("roi_align", &roi_align_cuda);
  m.impl("_roi_align_backward", &roi_align_backward_cuda_op);
}

}  // namespace detzoo
