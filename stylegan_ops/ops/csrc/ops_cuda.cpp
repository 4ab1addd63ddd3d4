// Python bindings and input validation for the CUDA kernels of the StyleGAN2 ops.
//
// Same module interface and semantics as ops_cpu.cpp; the kernels live in bias_act_cuda.cu
// and upfirdn2d_cuda.cu. Everything here runs on the host: it checks arguments, makes the
// tensors contiguous and computes shapes, so the .cu files only launch kernels.

#include <torch/csrc/utils/pybind.h>

#include <ATen/core/Tensor.h>
#include <ATen/ops/flip.h>
#include <ATen/ops/mul.h>

#include <cmath>
#include <limits>

#include "ops_checks.h"
#include "ops_math.h"

namespace ganbrush {

// Defined in bias_act_cuda.cu / upfirdn2d_cuda.cu.
at::Tensor bias_act_cuda(const at::Tensor& x, const at::Tensor& b, const at::Tensor& dy,
                         int64_t mode, int64_t inner, int64_t channels, int64_t act,
                         double alpha, double gain, double clamp);
at::Tensor upfirdn2d_cuda(const at::Tensor& x, const at::Tensor& weights, int64_t upx,
                          int64_t upy, int64_t downx, int64_t downy, int64_t padx0,
                          int64_t pady0, int64_t out_h, int64_t out_w);

namespace {

at::Tensor bias_act(const at::Tensor& x_in, const at::Tensor& b_in, const at::Tensor& dy_in,
                    int64_t mode, int64_t dim, int64_t act, double alpha, double gain,
                    double clamp) {
  TORCH_CHECK(x_in.is_cuda(), "bias_act (cuda): x must be a CUDA tensor, got ", x_in.device());
  check_bias_act_args(x_in, mode, act, alpha, gain);

  const at::Tensor x = x_in.contiguous();
  at::Tensor b = b_in;
  int64_t channels = 1, inner = 1;
  if (b_in.numel() > 0) {
    TORCH_CHECK(x.dim() > 0, "bias_act: a bias needs x with at least one dimension");
    TORCH_CHECK(dim >= 0 && dim < x.dim(), "bias_act: dim ", dim, " out of range for x with ",
                x.dim(), " dimensions");
    TORCH_CHECK(b_in.dim() == 1 && b_in.size(0) == x.size(dim), "bias_act: b must be 1-D with ",
                x.size(dim), " (= x.size(", dim, ")) entries, got shape ", b_in.sizes());
    TORCH_CHECK(b_in.device() == x.device() && b_in.scalar_type() == x.scalar_type(),
                "bias_act: b must have the device and dtype of x");
    channels = x.size(dim);
    for (int64_t i = dim + 1; i < x.dim(); ++i) inner *= x.size(i);
    b = b_in.contiguous();
  }
  at::Tensor dy = dy_in;
  if (static_cast<Mode>(mode) != Mode::Forward) {
    TORCH_CHECK(dy_in.sizes() == x.sizes(), "bias_act: dy must have the shape of x ", x.sizes(),
                ", got ", dy_in.sizes());
    TORCH_CHECK(dy_in.device() == x.device() && dy_in.scalar_type() == x.scalar_type(),
                "bias_act: dy must have the device and dtype of x");
    dy = dy_in.contiguous();
  }
  return bias_act_cuda(x, b, dy, mode, inner, channels, act, alpha, gain, clamp);
}

at::Tensor upfirdn2d(const at::Tensor& x_in, const at::Tensor& f_in, int64_t upx, int64_t upy,
                     int64_t downx, int64_t downy, int64_t padx0, int64_t padx1, int64_t pady0,
                     int64_t pady1, bool flip, double gain) {
  TORCH_CHECK(x_in.is_cuda() && f_in.device() == x_in.device(),
              "upfirdn2d (cuda): x and f must be CUDA tensors on the same device, got ",
              x_in.device(), " and ", f_in.device());
  check_upfirdn2d_args(x_in, f_in, upx, upy, downx, downy);

  const at::Tensor x = x_in.contiguous();
  const int64_t fh = f_in.size(0), fw = f_in.size(1);
  const int64_t out_w = floor_div(x.size(3) * upx + padx0 + padx1 - fw, downx) + 1;
  const int64_t out_h = floor_div(x.size(2) * upy + pady0 + pady1 - fh, downy) + 1;
  TORCH_CHECK(out_w >= 1 && out_h >= 1, "upfirdn2d: empty output (", out_h, "x", out_w,
              ") for input ", x.sizes(), ", filter ", f_in.sizes(), " and padding (", padx0, ", ",
              padx1, ", ", pady0, ", ", pady1, ")");
  const int64_t int_max = std::numeric_limits<int>::max();
  TORCH_CHECK(x.size(2) * upy + std::abs(pady0) + std::abs(pady1) < int_max &&
                  x.size(3) * upx + std::abs(padx0) + std::abs(padx1) < int_max,
              "upfirdn2d (cuda): image too large for 32-bit row/column indices");

  // Correlation weights: flipped for a true convolution unless flip, gain folded in with the
  // same float32 multiply the reference uses (f * gain).
  const at::Tensor taps = flip ? f_in : at::flip(f_in, {0, 1});
  const at::Tensor weights = at::mul(taps, gain).contiguous();
  return upfirdn2d_cuda(x, weights, upx, upy, downx, downy, padx0, pady0, out_h, out_w);
}

}  // namespace
}  // namespace ganbrush

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "ganbrush StyleGAN2 ops: CUDA kernels";
  m.def("bias_act", &ganbrush::bias_act, "Fused bias + activation + gain + clamp (CUDA)",
        py::arg("x"), py::arg("b"), py::arg("dy"), py::arg("mode"), py::arg("dim"), py::arg("act"),
        py::arg("alpha"), py::arg("gain"), py::arg("clamp"));
  m.def("upfirdn2d", &ganbrush::upfirdn2d, "Upsample, FIR filter, downsample (CUDA)", py::arg("x"),
        py::arg("f"), py::arg("upx"), py::arg("upy"), py::arg("downx"), py::arg("downy"),
        py::arg("padx0"), py::arg("padx1"), py::arg("pady0"), py::arg("pady1"), py::arg("flip"),
        py::arg("gain"));
}
