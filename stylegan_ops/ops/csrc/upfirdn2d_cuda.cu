// CUDA kernel for upfirdn2d: one thread per output pixel, polyphase.
//
// out[oy, ox] = sum_{ky, kx} w[ky, kx] * xup[oy * downy + ky - pady0, ox * downx + kx - padx0]
// where xup is the zero-upsampled input and w the correlation weights (already flipped
// unless flip_filter, gain folded in; prepared in ops_cuda.cpp). Each thread starts at the
// first tap that lands on a real input pixel and then steps by `up` taps / one input pixel,
// so inserted zeros are never read or multiplied, and outputs dropped by downsampling are
// never computed. The filter is staged in shared memory (it is read by every thread).

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <algorithm>

#include "cuda_utils.cuh"

namespace ganbrush {
namespace {

struct UpFirDnParams {
  int64_t planes;
  int in_h, in_w, out_h, out_w;
  int upx, upy, downx, downy, padx0, pady0;
  int fh, fw;
};

// Floor division / modulo for negative numerators (positions left of / above the image).
__device__ __forceinline__ int floor_div(int a, int b) {
  return a >= 0 ? a / b : -((-a + b - 1) / b);
}
__device__ __forceinline__ int floor_mod(int a, int b) { return a - floor_div(a, b) * b; }

// Largest filter kept in shared memory (the default 48 KiB limit); larger ones are read
// from global memory through the cache instead.
constexpr int64_t kMaxSharedFilterBytes = 48 * 1024;

template <typename scalar_t, typename acc_t = at::opmath_type<scalar_t>>
__global__ void upfirdn2d_kernel(const scalar_t* __restrict__ x,
                                 const float* __restrict__ weights, scalar_t* __restrict__ y,
                                 UpFirDnParams p, bool filter_in_shared) {
  extern __shared__ float shared_weights[];
  const float* w = weights;
  if (filter_in_shared) {  // uniform across the block, so the barrier is safe
    for (int i = threadIdx.x; i < p.fh * p.fw; i += blockDim.x) shared_weights[i] = weights[i];
    __syncthreads();
    w = shared_weights;
  }

  const int64_t total = p.planes * p.out_h * p.out_w;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < total; idx += stride) {
    const int ox = int(idx % p.out_w);
    const int64_t rest = idx / p.out_w;
    const int oy = int(rest % p.out_h);
    const int64_t plane = rest / p.out_h;

    // Position in the upsampled image read by tap (0, 0), then the first taps that land on
    // real pixels and the input pixel they read.
    const int bx = ox * p.downx - p.padx0;
    const int by = oy * p.downy - p.pady0;
    const int kx0 = floor_mod(-bx, p.upx);
    const int ky0 = floor_mod(-by, p.upy);
    const int ix0 = floor_div(bx + kx0, p.upx);
    const int iy0 = floor_div(by + ky0, p.upy);

    const scalar_t* x_plane = x + plane * p.in_h * p.in_w;
    acc_t acc = acc_t(0);
    for (int ky = ky0, iy = iy0; ky < p.fh; ky += p.upy, ++iy) {
      if (iy < 0 || iy >= p.in_h) continue;
      const scalar_t* x_row = x_plane + int64_t(iy) * p.in_w;
      const float* w_row = w + ky * p.fw;
      for (int kx = kx0, ix = ix0; kx < p.fw; kx += p.upx, ++ix) {
        if (ix < 0 || ix >= p.in_w) continue;
        acc += acc_t(w_row[kx]) * acc_t(x_row[ix]);
      }
    }
    y[idx] = scalar_t(acc);
  }
}

}  // namespace

// Called from ops_cuda.cpp with validated tensors on one device: x contiguous [N, C, H, W],
// weights contiguous float32 [fh, fw] correlation weights with the gain folded in.
at::Tensor upfirdn2d_cuda(const at::Tensor& x, const at::Tensor& weights, int64_t upx,
                          int64_t upy, int64_t downx, int64_t downy, int64_t padx0,
                          int64_t pady0, int64_t out_h, int64_t out_w) {
  const c10::cuda::CUDAGuard device_guard(x.device());
  at::Tensor y = at::empty({x.size(0), x.size(1), out_h, out_w}, x.options());
  if (y.numel() == 0) return y;

  UpFirDnParams p;
  p.planes = x.size(0) * x.size(1);
  p.in_h = int(x.size(2)), p.in_w = int(x.size(3));
  p.out_h = int(out_h), p.out_w = int(out_w);
  p.upx = int(upx), p.upy = int(upy), p.downx = int(downx), p.downy = int(downy);
  p.padx0 = int(padx0), p.pady0 = int(pady0);
  p.fh = int(weights.size(0)), p.fw = int(weights.size(1));

  const int64_t filter_bytes = weights.numel() * int64_t(sizeof(float));
  const bool filter_in_shared = filter_bytes <= kMaxSharedFilterBytes;
  const size_t shared_bytes = filter_in_shared ? size_t(filter_bytes) : 0;

  constexpr int kThreads = 256;
  const int64_t max_blocks =
      int64_t(multiprocessor_count(x.get_device())) * 16;
  const int blocks = int(std::min<int64_t>((y.numel() + kThreads - 1) / kThreads, max_blocks));
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "upfirdn2d_cuda", [&] {
    upfirdn2d_kernel<scalar_t><<<blocks, kThreads, shared_bytes, stream>>>(
        x.const_data_ptr<scalar_t>(), weights.const_data_ptr<float>(),
        y.mutable_data_ptr<scalar_t>(), p, filter_in_shared);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return y;
}

}  // namespace ganbrush
