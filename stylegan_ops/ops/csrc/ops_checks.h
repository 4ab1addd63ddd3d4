// Argument checks and integer helpers shared by the CPU and CUDA bindings, so both devices
// accept exactly the same inputs and say the same thing about bad ones. Device checks stay
// with each binding.
#pragma once

#include <ATen/core/Tensor.h>

#include <cmath>
#include <cstdint>

#include "ops_math.h"

namespace ganbrush {

// Rounds towards minus infinity (C++ division rounds towards zero); negative pads need it.
inline int64_t floor_div(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

inline void check_bias_act_args(const at::Tensor& x, int64_t mode, int64_t act, double alpha, double gain) {
  TORCH_CHECK(at::isFloatingType(x.scalar_type()),
              "bias_act: x must be a floating point tensor, got ", x.scalar_type());
  TORCH_CHECK(mode >= 0 && mode < kNumModes, "bias_act: unknown mode ", mode);
  TORCH_CHECK(act >= 0 && act < kNumActs, "bias_act: unknown activation code ", act);
  TORCH_CHECK(std::isfinite(alpha) && std::isfinite(gain), "bias_act: alpha and gain must be finite");
}

inline void check_upfirdn2d_args(const at::Tensor& x, const at::Tensor& f, int64_t upx, int64_t upy,
                                 int64_t downx, int64_t downy) {
  TORCH_CHECK(x.dim() == 4, "upfirdn2d: x must be [N, C, H, W], got shape ", x.sizes());
  TORCH_CHECK(at::isFloatingType(x.scalar_type()),
              "upfirdn2d: x must be a floating point tensor, got ", x.scalar_type());
  TORCH_CHECK(f.dim() == 2 && f.numel() > 0,
              "upfirdn2d: f must be a non-empty 2-D [fh, fw] filter, got shape ", f.sizes());
  TORCH_CHECK(f.scalar_type() == at::kFloat, "upfirdn2d: f must be float32, got ", f.scalar_type());
  TORCH_CHECK(upx >= 1 && upy >= 1 && downx >= 1 && downy >= 1,
              "upfirdn2d: up and down factors must be >= 1, got up=(", upx, ", ", upy,
              ") down=(", downx, ", ", downy, ")");
}

}  // namespace ganbrush
