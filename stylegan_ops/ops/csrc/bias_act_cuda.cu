// CUDA kernel for bias_act: one grid-stride elementwise pass.
//
// Semantics are those of the CPU kernel (ops_cpu.cpp) and the reference in bias_act.py; the
// per-element math is shared through ops_math.h. Inputs are validated in ops_cuda.cpp.

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty_like.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <algorithm>

#include "cuda_utils.cuh"

#include "ops_math.h"

namespace ganbrush {
namespace {

// x is viewed as [outer, channels, inner]; b (if any) has `channels` entries.
template <Act A, Mode M, typename scalar_t, typename acc_t = at::opmath_type<scalar_t>>
__global__ void bias_act_kernel(const scalar_t* __restrict__ x, const scalar_t* __restrict__ b,
                                const scalar_t* __restrict__ dy, scalar_t* __restrict__ y,
                                int64_t n, int64_t inner, int64_t channels,
                                BiasActParams<acc_t> p) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    acc_t s = acc_t(x[i]);
    if (b != nullptr) s += acc_t(b[(i / inner) % channels]);
    const acc_t g = M == Mode::Forward ? acc_t(0) : acc_t(dy[i]);
    y[i] = scalar_t(bias_act_element<A, M>(s, g, p));
  }
}

struct Launch {
  const at::Tensor& x;
  const at::Tensor& b;
  const at::Tensor& dy;
  at::Tensor& y;
  int64_t inner, channels;
};

template <Act A, Mode M, typename scalar_t>
void launch(const Launch& l, double alpha, double gain, double clamp) {
  using acc_t = at::opmath_type<scalar_t>;
  constexpr int kThreads = 256;
  const int64_t n = l.x.numel();
  // Enough blocks to fill the GPU several times over; the grid-stride loop does the rest.
  const int64_t max_blocks =
      int64_t(multiprocessor_count(l.x.get_device())) * 16;
  const int blocks = int(std::min<int64_t>((n + kThreads - 1) / kThreads, max_blocks));
  const scalar_t* bp = l.b.numel() > 0 ? l.b.const_data_ptr<scalar_t>() : nullptr;
  const scalar_t* dyp = M == Mode::Forward ? nullptr : l.dy.const_data_ptr<scalar_t>();
  bias_act_kernel<A, M, scalar_t><<<blocks, kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
      l.x.const_data_ptr<scalar_t>(), bp, dyp, l.y.mutable_data_ptr<scalar_t>(), n, l.inner,
      l.channels, make_bias_act_params<acc_t>(alpha, gain, clamp));
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template <typename scalar_t, Act A>
void launch_mode(Mode mode, const Launch& l, double alpha, double gain, double clamp) {
  switch (mode) {
    case Mode::Forward: return launch<A, Mode::Forward, scalar_t>(l, alpha, gain, clamp);
    case Mode::Grad: return launch<A, Mode::Grad, scalar_t>(l, alpha, gain, clamp);
    case Mode::Grad2: return launch<A, Mode::Grad2, scalar_t>(l, alpha, gain, clamp);
  }
}

template <typename scalar_t>
void launch_act(Act act, Mode mode, const Launch& l, double alpha, double gain, double clamp) {
  switch (act) {
    case Act::Linear: return launch_mode<scalar_t, Act::Linear>(mode, l, alpha, gain, clamp);
    case Act::Relu: return launch_mode<scalar_t, Act::Relu>(mode, l, alpha, gain, clamp);
    case Act::Lrelu: return launch_mode<scalar_t, Act::Lrelu>(mode, l, alpha, gain, clamp);
    case Act::Tanh: return launch_mode<scalar_t, Act::Tanh>(mode, l, alpha, gain, clamp);
    case Act::Sigmoid: return launch_mode<scalar_t, Act::Sigmoid>(mode, l, alpha, gain, clamp);
    case Act::Elu: return launch_mode<scalar_t, Act::Elu>(mode, l, alpha, gain, clamp);
    case Act::Selu: return launch_mode<scalar_t, Act::Selu>(mode, l, alpha, gain, clamp);
    case Act::Softplus: return launch_mode<scalar_t, Act::Softplus>(mode, l, alpha, gain, clamp);
    case Act::Swish: return launch_mode<scalar_t, Act::Swish>(mode, l, alpha, gain, clamp);
  }
}

}  // namespace

// Called from ops_cuda.cpp with validated, contiguous tensors on one device.
at::Tensor bias_act_cuda(const at::Tensor& x, const at::Tensor& b, const at::Tensor& dy,
                         int64_t mode, int64_t inner, int64_t channels, int64_t act,
                         double alpha, double gain, double clamp) {
  const c10::cuda::CUDAGuard device_guard(x.device());
  at::Tensor y = at::empty_like(x, at::MemoryFormat::Contiguous);
  if (x.numel() == 0) return y;
  const Launch l{x, b, dy, y, std::max<int64_t>(inner, 1), std::max<int64_t>(channels, 1)};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "bias_act_cuda", [&] {
    launch_act<scalar_t>(static_cast<Act>(act), static_cast<Mode>(mode), l, alpha, gain, clamp);
  });
  return y;
}

}  // namespace ganbrush
