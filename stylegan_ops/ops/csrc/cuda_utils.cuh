// Small CUDA helpers shared by the kernels.
#pragma once

#include <c10/cuda/CUDAException.h>

namespace ganbrush {

// Streams and devices come from c10 directly (at::cuda::getCurrentCUDAStream is an alias of
// c10::cuda::getCurrentCUDAStream): ATen/cuda/CUDAContext.h would also pull in the cuBLAS /
// cuSPARSE headers, which minimal CUDA toolkits do not ship.
inline int multiprocessor_count(int device) {
  int count = 0;
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, device));
  return count;
}

}  // namespace ganbrush
