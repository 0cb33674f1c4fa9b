// Argument checks shared by the CPU and CUDA entry points of roi_align and roi_align_rotated
// (shapes, dtypes, devices: nothing that reads tensor data).
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include "roi_align_common.h"

namespace detzoo::roi {

inline const char* op_name(const Params& p) {
  return p.rotated ? "roi_align_rotated" : "roi_align";
}

inline void check_params(const Params& p) {
  TORCH_CHECK(p.pooled_height > 0 && p.pooled_width > 0, op_name(p),
              ": output size must be positive, got (", p.pooled_height, ", ", p.pooled_width, ")");
}

inline void check_rois(const at::Tensor& rois, const at::Tensor& like, const Params& p) {
  const int64_t cols = roi_columns(p);
  const char* layout = p.rotated ? "] (batch_index, cx, cy, w, h, angle_degrees)"
                                 : "] (batch_index, x1, y1, x2, y2)";
  TORCH_CHECK(rois.dim() == 2 && rois.size(1) == cols, op_name(p), ": rois must be [K, ", cols,
              layout, ", got ", rois.sizes());
  TORCH_CHECK(rois.is_floating_point(), op_name(p), ": rois must be floating point, got ",
              rois.scalar_type());
  TORCH_CHECK(rois.device() == like.device(), op_name(p), ": rois are on ", rois.device(),
              " but the features on ", like.device(), "; move both to one device");
}

inline void check_features(const at::Tensor& t, const char* what, const Params& p) {
  TORCH_CHECK(t.is_floating_point(), op_name(p), ": ", what, " must be floating point, got ",
              t.scalar_type());
}

inline void check_forward(const at::Tensor& input, const at::Tensor& rois, const Params& p) {
  TORCH_CHECK(input.dim() == 4, op_name(p), ": input must be [B, C, H, W], got ", input.sizes());
  check_features(input, "input", p);
  check_rois(rois, input, p);
  check_params(p);
}

inline void check_backward(const at::Tensor& grad, const at::Tensor& rois, const Params& p,
                           int64_t channels) {
  TORCH_CHECK(grad.dim() == 4 && grad.size(0) == rois.size(0) && grad.size(1) == channels &&
                  grad.size(2) == p.pooled_height && grad.size(3) == p.pooled_width,
              op_name(p), ": grad must be [K, C, pooled_height, pooled_width] = [", rois.size(0),
              ", ", channels, ", ", p.pooled_height, ", ", p.pooled_width, "], got ", grad.sizes());
  check_features(grad, "grad", p);
  check_rois(rois, grad, p);
  check_params(p);
}

}  // namespace detzoo::roi
