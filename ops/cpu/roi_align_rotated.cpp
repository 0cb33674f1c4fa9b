// CPU kernels of detzoo::roi_align_rotated / _roi_align_rotated_backward (Detectron2
// ROIAlignRotated): the ROIAlign kernels of roi_align.cpp with rotated sampling grids.
#include <torch/library.h>

#include "cpu/roi_align_cpu.h"

namespace detzoo {
namespace {

at::Tensor roi_align_rotated_cpu(const at::Tensor& input, const at::Tensor& rois,
                                 double spatial_scale, int64_t pooled_height, int64_t pooled_width,
                                 int64_t sampling_ratio) {
  return roi_align_forward_cpu(
      input, rois, roi::rotated_params(spatial_scale, pooled_height, pooled_width, sampling_ratio));
}

at::Tensor roi_align_rotated_backward_cpu(const at::Tensor& grad, const at::Tensor& rois,
                                          double spatial_scale, int64_t pooled_height,
                                          int64_t pooled_width, int64_t batch_size,
                                          int64_t channels, int64_t height, int64_t width,
                                          int64_t sampling_ratio) {
  return roi_align_backward_cpu(
      grad, rois, roi::rotated_params(spatial_scale, pooled_height, pooled_width, sampling_ratio),
      batch_size, channels, height, width);
}

}  // namespace

TORCH_LIBRARY_IMPL(detzoo, CPU, m) {
  m.impl("roi_align_rotated", &roi_align_rotated_cpu);
  m.impl("_roi_align_rotated_backward", &roi_align_rotated_backward_cpu);
}

}  // namespace detzoo
