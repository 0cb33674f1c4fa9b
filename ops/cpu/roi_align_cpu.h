// CPU kernels shared by detzoo::roi_align and detzoo::roi_align_rotated (ops/cpu/roi_align.cpp):
// the two ops differ only in where the samples of a bin lie (roi::make_grid).
#pragma once

#include <ATen/core/Tensor.h>

#include "roi_align_common.h"

namespace detzoo {

// input [B, C, H, W], rois [K, 5 or 6] -> [K, C, pooled_height, pooled_width], input's dtype.
at::Tensor roi_align_forward_cpu(const at::Tensor& input, const at::Tensor& rois,
                                 const roi::Params& p);

// grad [K, C, pooled_height, pooled_width] -> grad of the input, [B, C, H, W], grad's dtype.
at::Tensor roi_align_backward_cpu(const at::Tensor& grad, const at::Tensor& rois,
                                  const roi::Params& p, int64_t batch_size, int64_t channels,
                                  int64_t height, int64_t width);

}  // namespace detzoo
