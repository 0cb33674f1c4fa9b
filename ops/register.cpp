// The one TORCH_LIBRARY block of detzoo._C: every op schema lives here, so the op set is
// readable in one place. Kernels register their CPU/CUDA implementations with
// TORCH_LIBRARY_IMPL in ops/cpu/*.cpp and ops/cuda/*.cu.
#include <Python.h>
#include <torch/library.h>

TORCH_LIBRARY(detzoo, m) {
  // ROIAlign (Detectron2 ROIAlign / torchvision.ops.roi_align semantics).
  // input [B,C,H,W], rois [K,5] (batch_index, x1, y1, x2, y2) -> [K,C,pooled_height,pooled_width]
  m.def(
      "roi_align(Tensor input, Tensor rois, float spatial_scale, SymInt pooled_height, "
      "SymInt pooled_width, int sampling_ratio, bool aligned) -> Tensor");
  m.def(
      "_roi_align_backward(Tensor grad, Tensor rois, float spatial_scale, SymInt pooled_height, "
      "SymInt pooled_width, SymInt batch_size, SymInt channels, SymInt height, SymInt width, "
      "int sampling_ratio, bool aligned) -> Tensor");
  // ROIAlignRotated (Detectron2 semantics): rois [K,6] (batch_index, cx, cy, w, h, angle_degrees_ccw).
  m.def(
      "roi_align_rotated(Tensor input, Tensor rois, float spatial_scale, SymInt pooled_height, "
      "SymInt pooled_width, int sampling_ratio) -> Tensor");
  m.def(
      "_roi_align_rotated_backward(Tensor grad, Tensor rois, float spatial_scale, "
      "SymInt pooled_height, SymInt pooled_width, SymInt batch_size, SymInt channels, "
      "SymInt height, SymInt width, int sampling_ratio) -> Tensor");
  // NMS: boxes [N,4] XYXY, scores [N] -> int64 indices of kept boxes, by decreasing score.
  m.def("nms(Tensor boxes, Tensor scores, float iou_threshold) -> Tensor");
  // Per-category NMS: idxs [N] int64 category of each box; boxes of different categories never suppress each other.
  m.def("batched_nms(Tensor boxes, Tensor scores, Tensor idxs, float iou_threshold) -> Tensor");
  // Rotated boxes (cx, cy, w, h, angle_degrees_ccw) as Detectron2.
  m.def("nms_rotated(Tensor boxes, Tensor scores, float iou_threshold) -> Tensor");
  m.def("box_iou_rotated(Tensor boxes1, Tensor boxes2) -> Tensor");
  // Paste masks [N,M,M] (probabilities) at boxes [N,4] into [N,height,width] image masks
  // (Detectron2 paste_masks_in_image semantics). threshold >= 0 -> bool; < 0 -> uint8 (mask * 255).
  m.def("paste_masks(Tensor masks, Tensor boxes, SymInt height, SymInt width, float threshold) -> Tensor");
}

// detzoo._C is an op library, not a Python API: importing it runs the registrations above.
static struct PyModuleDef detzoo_c_module = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
PyMODINIT_FUNC PyInit__C(void) { return PyModule_Create(&detzoo_c_module); }
