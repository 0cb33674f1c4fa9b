// DZ_HOST_DEVICE marks small helpers compiled for both the CPU kernels and the CUDA kernels, so
// each piece of geometry has one implementation. (Same definition as box_iou_rotated_utils.h.)
#pragma once

#ifndef DZ_HOST_DEVICE
#if defined(__CUDACC__)
#define DZ_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define DZ_HOST_DEVICE inline
#endif
#endif
