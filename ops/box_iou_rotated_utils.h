// Geometry of rotated rectangles shared by the CPU and CUDA kernels of box_iou_rotated and
// nms_rotated (one implementation, compiled for host and device).
//
// A rotated box is (cx, cy, w, h, angle) with the angle in degrees, counter-clockwise in image
// coordinates (y down), as in Detectron2: the box's own x axis points along (cos a, -sin a).
//
// Intersection area, exactly as a convex polygon: box `a` is expressed in the frame of box `b`
// (b centred at the origin and axis-aligned, which is also what keeps float precision when the
// boxes are far from the image origin), then clipped by b's four half-planes |u| <= w/2,
// |v| <= h/2 (Sutherland-Hodgman; every clipped vertex lies exactly on the clipping line), and
// the shoelace formula gives the area. This is the same polygon Detectron2 finds from edge
// crossings + contained vertices + a convex hull, without the sort.
//
// Two exact shortcuts make the common cases cheap (same results, up to rounding):
//   * boxes whose axis-aligned bounds do not overlap do not intersect (area 0);
//   * boxes at exact multiples of 90 degrees are axis-aligned rectangles (w, h swapped at 90/270):
//     the overlap is a product of two 1-D overlaps.
#pragma once

#include <cmath>

#if defined(__CUDACC__)
#define DZ_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define DZ_HOST_DEVICE inline
#endif

namespace detzoo::rotated {

// Largest vertex count a clipped polygon may reach. A rectangle clipped by 4 half-planes has at
// most 8 vertices; the margin only matters for rounding-degenerate input, and writes past it are
// dropped (never out of bounds).
constexpr int kMaxVertices = 16;

template <typename T>
DZ_HOST_DEVICE T abs_(T x) {
  return x < T(0) ? -x : x;
}
template <typename T>
DZ_HOST_DEVICE T min_(T x, T y) {
  return y < x ? y : x;
}
template <typename T>
DZ_HOST_DEVICE T max_(T x, T y) {
  return x < y ? y : x;
}

// A rotated box with everything the pairwise computation needs precomputed once per box.
template <typename T>
struct RBox {
  T cx, cy;         // centre, pixels
  T hw, hh;         // half width / half height, pixels (>= 0)
  T c, s;           // cos and sin of the angle
  T ex, ey;         // half extents of the axis-aligned bounding box
  T area;           // w * h as given; below 1e-14 the box has IoU 0 with everything
  bool axis_aligned;  // angle is an exact multiple of 90 degrees (c, s exactly 0 or +-1)
};

// box: pointer to 5 values (cx, cy, w, h, angle_degrees).
template <typename T>
DZ_HOST_DEVICE RBox<T> make_rbox(const T* box) {
  RBox<T> r;
  r.cx = box[0];
  r.cy = box[1];
  r.area = box[2] * box[3];
  // Negative w and h together describe the same rectangle turned by 180 degrees.
  r.hw = abs_(box[2]) / T(2);
  r.hh = abs_(box[3]) / T(2);
  // Angles are reduced and converted in double, whatever T is.
  const double a = ::fmod(static_cast<double>(box[4]), 360.0);
  const double quarter = a / 90.0;
  r.axis_aligned = quarter == ::floor(quarter);
  if (r.axis_aligned) {
    const int k = (static_cast<int>(quarter) % 4 + 4) % 4;
    r.c = k == 0 ? T(1) : (k == 2 ? T(-1) : T(0));
    r.s = k == 1 ? T(1) : (k == 3 ? T(-1) : T(0));
  } else {
    const double theta = a * (3.14159265358979323846 / 180.0);
    r.c = static_cast<T>(::cos(theta));
    r.s = static_cast<T>(::sin(theta));
  }
  r.ex = abs_(r.c) * r.hw + abs_(r.s) * r.hh;
  r.ey = abs_(r.s) * r.hw + abs_(r.c) * r.hh;
  return r;
}

// Clips the polygon (pu, pv)[0..n) by the half-plane sign * coord <= lim, where coord is u
// (on_u) or v; writes the result to (qu, qv) and returns its vertex count.
template <typename T>
DZ_HOST_DEVICE int clip_half_plane(
    const T* pu, const T* pv, int n, T* qu, T* qv, bool on_u, T sign, T lim) {
  int m = 0;
  for (int i = 0; i < n; ++i) {
    const int j = i + 1 == n ? 0 : i + 1;
    const T di = lim - sign * (on_u ? pu[i] : pv[i]);  // >= 0: inside
    const T dj = lim - sign * (on_u ? pu[j] : pv[j]);
    if (di >= T(0) && m < kMaxVertices) {
      qu[m] = pu[i];
      qv[m] = pv[i];
      ++m;
    }
    if ((di >= T(0)) != (dj >= T(0)) && m < kMaxVertices) {
      const T t = di / (di - dj);  // di, dj of opposite signs: denominator is not 0
      const T yi = on_u ? pv[i] : pu[i];
      const T yj = on_u ? pv[j] : pu[j];
      const T y = yi + t * (yj - yi);
      qu[m] = on_u ? sign * lim : y;
      qv[m] = on_u ? y : sign * lim;
      ++m;
    }
  }
  return m;
}

template <typename T>
DZ_HOST_DEVICE T polygon_area(const T* u, const T* v, int n) {
  if (n < 3) {
    return T(0);
  }
  T twice = 0;
  for (int i = 0; i < n; ++i) {
    const int j = i + 1 == n ? 0 : i + 1;
    twice += u[i] * v[j] - u[j] * v[i];
  }
  return abs_(twice) / T(2);
}

// Area of the intersection of two rotated boxes, in square pixels.
template <typename T>
DZ_HOST_DEVICE T intersection_area(const RBox<T>& a, const RBox<T>& b) {
  const T gx = a.cx - b.cx;
  const T gy = a.cy - b.cy;
  if (abs_(gx) >= a.ex + b.ex || abs_(gy) >= a.ey + b.ey) {
    return T(0);  // axis-aligned bounds are disjoint
  }
  if (a.axis_aligned && b.axis_aligned) {
    const T ox = min_(gx + a.ex, b.ex) - max_(gx - a.ex, -b.ex);
    const T oy = min_(gy + a.ey, b.ey) - max_(gy - a.ey, -b.ey);
    return max_(ox, T(0)) * max_(oy, T(0));
  }
  // a's centre (pu, pv) and half-axes (xu, xv), (yu, yv) in b's frame.
  const T pu = gx * b.c - gy * b.s;
  const T pv = gx * b.s + gy * b.c;
  const T rc = a.c * b.c + a.s * b.s;  // cos(angle_a - angle_b)
  const T rs = a.s * b.c - a.c * b.s;  // sin(angle_a - angle_b)
  const T xu = rc * a.hw, xv = -rs * a.hw;
  const T yu = rs * a.hh, yv = rc * a.hh;
  if (abs_(pu) >= b.hw + abs_(xu) + abs_(yu) || abs_(pv) >= b.hh + abs_(xv) + abs_(yv)) {
    return T(0);  // bounds of a in b's frame are disjoint from b
  }
  T u[kMaxVertices] = {pu + xu + yu, pu - xu + yu, pu - xu - yu, pu + xu - yu};
  T v[kMaxVertices] = {pv + xv + yv, pv - xv + yv, pv - xv - yv, pv + xv - yv};
  T u2[kMaxVertices], v2[kMaxVertices];
  int n = clip_half_plane(u, v, 4, u2, v2, true, T(1), b.hw);
  n = clip_half_plane(u2, v2, n, u, v, true, T(-1), b.hw);
  n = clip_half_plane(u, v, n, u2, v2, false, T(1), b.hh);
  n = clip_half_plane(u2, v2, n, u, v, false, T(-1), b.hh);
  return polygon_area(u, v, n);
}

// Intersection over union of two rotated boxes; 0 when either has (near) zero area.
template <typename T>
DZ_HOST_DEVICE T iou(const RBox<T>& a, const RBox<T>& b) {
  if (a.area < T(1e-14) || b.area < T(1e-14)) {
    return T(0);
  }
  const T inter = intersection_area(a, b);
  return inter / (a.area + b.area - inter);
}

}  // namespace detzoo::rotated
