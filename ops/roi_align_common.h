// Sampling geometry of ROIAlign and ROIAlignRotated, shared by the CPU and CUDA kernels.
//
// Every output bin (ph, pw) of a roi averages grid_h x grid_w bilinear samples placed at the
// centres of a regular sub-grid of the bin. The grid lives in the roi's own frame; a sample
// (yy, xx) of that frame lies at
//     y = yy * cos - xx * sin + center_y,   x = yy * sin + xx * cos + center_x
// on the feature map. Axis-aligned rois use cos = 1, sin = 0, center = 0 and the roi's top-left
// corner as the grid origin, which gives torchvision's sample positions bit for bit.
//
// Bilinear interpolation follows torchvision / Detectron2: a sample outside [-1, H] x [-1, W]
// reads 0; one in [-1, 0] reads the border pixel.
#pragma once

#include <cmath>
#include <cstdint>

#include "host_device.h"

namespace detzoo::roi {

// Scalar parameters of one ROIAlign / ROIAlignRotated call.
struct Params {
  double spatial_scale;  // feature-map pixels per roi unit
  int64_t pooled_height;
  int64_t pooled_width;
  int64_t sampling_ratio;  // samples per bin side; <= 0: ceil(roi size / pooled size)
  bool aligned;            // half-pixel offset (always on for rotated rois)
  bool rotated;            // rois are [K, 6] (batch, cx, cy, w, h, angle_deg) instead of [K, 5]
};

// Values per roi row: (batch, x1, y1, x2, y2) or (batch, cx, cy, w, h, angle).
DZ_HOST_DEVICE int64_t roi_columns(const Params& p) { return p.rotated ? 6 : 5; }

// Parameters of a roi_align_rotated call (always half-pixel aligned).
inline Params rotated_params(double spatial_scale, int64_t pooled_height, int64_t pooled_width,
                             int64_t sampling_ratio) {
  return {spatial_scale, pooled_height, pooled_width, sampling_ratio, /*aligned=*/true,
          /*rotated=*/true};
}

template <typename T>
struct Grid {
  int64_t batch;
  T start_y, start_x;  // top-left corner of the sampling grid, in the roi frame
  T bin_h, bin_w;      // bin size, feature-map pixels
  int grid_h, grid_w;  // samples per bin side
  T cos_a, sin_a, center_y, center_x;  // roi frame -> feature map
  T count;                             // samples averaged per bin (>= 1)
};

template <typename T>
DZ_HOST_DEVICE int samples_per_side(T roi_size, int64_t pooled, int64_t sampling_ratio) {
  return sampling_ratio > 0 ? static_cast<int>(sampling_ratio)
                            : static_cast<int>(ceil(roi_size / static_cast<T>(pooled)));
}

// The sampling grid of one roi row (torchvision roi_align or Detectron2 ROIAlignRotated layout).
// T is the accumulation type; R the rois' storage type.
template <typename T, typename R>
DZ_HOST_DEVICE Grid<T> make_grid(const R* roi, const Params& p) {
  const T scale = static_cast<T>(p.spatial_scale);
  Grid<T> g;
  g.batch = static_cast<int64_t>(roi[0]);
  T height, width;
  if (p.rotated) {
    width = static_cast<T>(roi[3]) * scale;
    height = static_cast<T>(roi[4]) * scale;
    const T theta = static_cast<T>(roi[5]) * static_cast<T>(M_PI / 180.0);
    g.cos_a = cos(theta);
    g.sin_a = sin(theta);
    g.center_x = static_cast<T>(roi[1]) * scale - static_cast<T>(0.5);
    g.center_y = static_cast<T>(roi[2]) * scale - static_cast<T>(0.5);
    g.start_x = -width / static_cast<T>(2);
    g.start_y = -height / static_cast<T>(2);
  } else {
    const T offset = p.aligned ? static_cast<T>(0.5) : static_cast<T>(0);
    g.start_x = static_cast<T>(roi[1]) * scale - offset;
    g.start_y = static_cast<T>(roi[2]) * scale - offset;
    width = static_cast<T>(roi[3]) * scale - offset - g.start_x;
    height = static_cast<T>(roi[4]) * scale - offset - g.start_y;
    if (!p.aligned) {  // legacy: malformed rois are forced to be 1x1
      width = width > static_cast<T>(1) ? width : static_cast<T>(1);
      height = height > static_cast<T>(1) ? height : static_cast<T>(1);
    }
    g.cos_a = 1;
    g.sin_a = 0;
    g.center_x = 0;
    g.center_y = 0;
  }
  g.bin_h = height / static_cast<T>(p.pooled_height);
  g.bin_w = width / static_cast<T>(p.pooled_width);
  g.grid_h = samples_per_side(height, p.pooled_height, p.sampling_ratio);
  g.grid_w = samples_per_side(width, p.pooled_width, p.sampling_ratio);
  const int n = g.grid_h * g.grid_w;
  g.count = static_cast<T>(n > 1 ? n : 1);
  return g;
}

// Feature-map position (y, x) of sample (iy, ix) of bin (ph, pw).
template <typename T>
DZ_HOST_DEVICE void sample_point(const Grid<T>& g, int64_t ph, int64_t pw, int iy, int ix, T& y,
                                 T& x) {
  const T yy = g.start_y + static_cast<T>(ph) * g.bin_h +
               static_cast<T>(iy + .5f) * g.bin_h / static_cast<T>(g.grid_h);
  const T xx = g.start_x + static_cast<T>(pw) * g.bin_w +
               static_cast<T>(ix + .5f) * g.bin_w / static_cast<T>(g.grid_w);
  y = yy * g.cos_a - xx * g.sin_a + g.center_y;
  x = yy * g.sin_a + xx * g.cos_a + g.center_x;
}

// The four neighbours of a sample (offsets y * W + x into one feature plane) and their weights.
template <typename T>
struct Bilinear {
  int64_t o1, o2, o3, o4;  // (y0, x0), (y0, x1), (y1, x0), (y1, x1)
  T w1, w2, w3, w4;
};

template <typename T>
DZ_HOST_DEVICE Bilinear<T> bilinear(int64_t height, int64_t width, T y, T x) {
  Bilinear<T> b{0, 0, 0, 0, 0, 0, 0, 0};
  if (y < static_cast<T>(-1) || y > static_cast<T>(height) || x < static_cast<T>(-1) ||
      x > static_cast<T>(width)) {
    return b;  // outside the feature map: contributes 0
  }
  if (y <= 0) y = 0;
  if (x <= 0) x = 0;
  int64_t y0 = static_cast<int64_t>(y), x0 = static_cast<int64_t>(x), y1, x1;
  if (y0 >= height - 1) {
    y1 = y0 = height - 1;
    y = static_cast<T>(y0);
  } else {
    y1 = y0 + 1;
  }
  if (x0 >= width - 1) {
    x1 = x0 = width - 1;
    x = static_cast<T>(x0);
  } else {
    x1 = x0 + 1;
  }
  const T ly = y - static_cast<T>(y0), lx = x - static_cast<T>(x0);
  const T hy = static_cast<T>(1) - ly, hx = static_cast<T>(1) - lx;
  b.o1 = y0 * width + x0;
  b.o2 = y0 * width + x1;
  b.o3 = y1 * width + x0;
  b.o4 = y1 * width + x1;
  b.w1 = hy * hx;
  b.w2 = hy * lx;
  b.w3 = ly * hx;
  b.w4 = ly * lx;
  return b;
}

}  // namespace detzoo::roi
