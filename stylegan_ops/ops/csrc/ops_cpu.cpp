// CPU kernels for the StyleGAN2 custom ops: fused bias + activation and upfirdn2d.
//
// The semantics are defined by the pure-PyTorch references in bias_act.py and upfirdn2d.py;
// this file only has to be faster. Both ops are memory- or load-bound, so the kernels aim
// for: one pass over memory, inner loops the compiler can vectorise (`#pragma omp simd`
// over contiguous data, everything that varies per element known at compile time), and
// coarse-grained at::parallel_for over independent rows / image planes.
//
// half and bfloat16 are computed in float (at::opmath_type); float and double in themselves.

#include <torch/extension.h>

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <vector>

#include "ops_math.h"

namespace ganbrush {
namespace {

// Elements per parallel task: large enough to amortise scheduling, small enough that the
// two-core machine (and bigger ones) get balanced work on StyleGAN-sized tensors.
constexpr int64_t kGrainElements = 32768;

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Floor division / modulo that are correct for negative numerators (paddings can be
// negative, so tap positions can be left of the image).
int64_t floor_div(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }
int64_t floor_mod(int64_t a, int64_t b) { return a - floor_div(a, b) * b; }

// Runs fn(row, begin, end) over `rows` rows of `row_len` elements each. Long rows are cut
// into chunks so a single huge row still spreads over all threads.
template <typename Fn>
void parallel_rows(int64_t rows, int64_t row_len, const Fn& fn) {
  if (rows == 0 || row_len == 0) return;
  const int64_t chunk = std::min<int64_t>(row_len, kGrainElements);
  const int64_t chunks_per_row = ceil_div(row_len, chunk);
  const int64_t grain = std::max<int64_t>(1, kGrainElements / chunk);
  at::parallel_for(0, rows * chunks_per_row, grain, [&](int64_t first, int64_t last) {
    for (int64_t item = first; item < last; ++item) {
      const int64_t row = item / chunks_per_row;
      const int64_t begin = (item % chunks_per_row) * chunk;
      fn(row, begin, std::min(begin + chunk, row_len));
    }
  });
}

// ---------------------------------------------------------------------------------------
// bias_act
// ---------------------------------------------------------------------------------------

// x viewed as [outer, channels, inner] around the bias dimension.
struct BiasActShape {
  int64_t outer = 1;
  int64_t channels = 1;
  int64_t inner = 1;
};

// Below this many contiguous elements per channel (e.g. bias along the last dimension) a
// per-row scalar bias would give tiny rows; we switch to a per-element bias vector instead.
constexpr int64_t kMinScalarBiasRow = 16;

// One contiguous span with a constant bias: the hot loop for [N, C, H, W] with dim=1.
template <Act A, Mode M, bool kClamp, typename scalar_t, typename acc_t>
void bias_act_span_scalar_bias(const scalar_t* __restrict__ x, const scalar_t* __restrict__ dy,
                               scalar_t* __restrict__ y, int64_t n, acc_t bias,
                               BiasActParams<acc_t> p) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    const acc_t g = M == Mode::Forward ? acc_t(0) : acc_t(dy[i]);
    y[i] = scalar_t(bias_act_element<A, M, kClamp>(acc_t(x[i]) + bias, g, p));
  }
}

// One contiguous span whose bias changes every element (bias dimension is innermost).
template <Act A, Mode M, bool kClamp, typename scalar_t, typename acc_t>
void bias_act_span_vector_bias(const scalar_t* __restrict__ x, const scalar_t* __restrict__ dy,
                               scalar_t* __restrict__ y, int64_t n,
                               const acc_t* __restrict__ bias, BiasActParams<acc_t> p) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    const acc_t g = M == Mode::Forward ? acc_t(0) : acc_t(dy[i]);
    y[i] = scalar_t(bias_act_element<A, M, kClamp>(acc_t(x[i]) + bias[i], g, p));
  }
}

template <Act A, Mode M, bool kClamp, typename scalar_t>
void bias_act_run(const at::Tensor& x, const at::Tensor& b, const at::Tensor& dy, at::Tensor& y,
                  const BiasActShape& shape, BiasActParams<at::opmath_type<scalar_t>> p) {
  using acc_t = at::opmath_type<scalar_t>;
  const scalar_t* xp = x.const_data_ptr<scalar_t>();
  const scalar_t* dyp = M == Mode::Forward ? nullptr : dy.const_data_ptr<scalar_t>();
  scalar_t* yp = y.mutable_data_ptr<scalar_t>();

  if (b.numel() == 0) {
    // No bias: the whole tensor is one flat span.
    parallel_rows(1, x.numel(), [&](int64_t, int64_t begin, int64_t end) {
      bias_act_span_scalar_bias<A, M, kClamp>(xp + begin, dyp ? dyp + begin : nullptr, yp + begin,
                                              end - begin, acc_t(0), p);
    });
    return;
  }

  const scalar_t* bp = b.const_data_ptr<scalar_t>();
  if (shape.inner >= kMinScalarBiasRow) {
    // Rows of `inner` elements, one per (outer, channel) pair, each with a constant bias.
    parallel_rows(shape.outer * shape.channels, shape.inner,
                  [&](int64_t row, int64_t begin, int64_t end) {
                    const int64_t off = row * shape.inner + begin;
                    const acc_t bias = acc_t(bp[row % shape.channels]);
                    bias_act_span_scalar_bias<A, M, kClamp>(
                        xp + off, dyp ? dyp + off : nullptr, yp + off, end - begin, bias, p);
                  });
    return;
  }

  // Short per-channel runs: expand the bias to one [channels * inner] row shared by all
  // `outer` rows, so the loop is a plain element-wise add again.
  const int64_t row_len = shape.channels * shape.inner;
  std::vector<acc_t> bias_row(row_len);
  for (int64_t c = 0; c < shape.channels; ++c) {
    std::fill_n(bias_row.data() + c * shape.inner, shape.inner, acc_t(bp[c]));
  }
  parallel_rows(shape.outer, row_len, [&](int64_t row, int64_t begin, int64_t end) {
    const int64_t off = row * row_len + begin;
    bias_act_span_vector_bias<A, M, kClamp>(xp + off, dyp ? dyp + off : nullptr, yp + off,
                                            end - begin, bias_row.data() + begin, p);
  });
}

// Turns the runtime (act, mode, clamp) triple into template arguments.
template <typename scalar_t, Act A>
void bias_act_dispatch_mode(Mode mode, bool clamp, const at::Tensor& x, const at::Tensor& b,
                            const at::Tensor& dy, at::Tensor& y, const BiasActShape& shape,
                            BiasActParams<at::opmath_type<scalar_t>> p) {
#define GANBRUSH_MODE_CASE(M)                                                   \
  case M:                                                                       \
    if (clamp) {                                                                \
      bias_act_run<A, M, true, scalar_t>(x, b, dy, y, shape, p);                \
    } else {                                                                    \
      bias_act_run<A, M, false, scalar_t>(x, b, dy, y, shape, p);               \
    }                                                                           \
    return;
  switch (mode) {
    GANBRUSH_MODE_CASE(Mode::Forward)
    GANBRUSH_MODE_CASE(Mode::Grad)
    GANBRUSH_MODE_CASE(Mode::Grad2)
  }
#undef GANBRUSH_MODE_CASE
}

template <typename scalar_t>
void bias_act_dispatch(Act act, Mode mode, bool clamp, const at::Tensor& x, const at::Tensor& b,
                       const at::Tensor& dy, at::Tensor& y, const BiasActShape& shape,
                       BiasActParams<at::opmath_type<scalar_t>> p) {
#define GANBRUSH_ACT_CASE(A)                                                          \
  case A:                                                                             \
    return bias_act_dispatch_mode<scalar_t, A>(mode, clamp, x, b, dy, y, shape, p);
  switch (act) {
    GANBRUSH_ACT_CASE(Act::Linear)
    GANBRUSH_ACT_CASE(Act::Relu)
    GANBRUSH_ACT_CASE(Act::Lrelu)
    GANBRUSH_ACT_CASE(Act::Tanh)
    GANBRUSH_ACT_CASE(Act::Sigmoid)
    GANBRUSH_ACT_CASE(Act::Elu)
    GANBRUSH_ACT_CASE(Act::Selu)
    GANBRUSH_ACT_CASE(Act::Softplus)
    GANBRUSH_ACT_CASE(Act::Swish)
  }
#undef GANBRUSH_ACT_CASE
}

at::Tensor bias_act(const at::Tensor& x_in, const at::Tensor& b_in, const at::Tensor& dy_in,
                    int64_t mode, int64_t dim, int64_t act, double alpha, double gain,
                    double clamp) {
  TORCH_CHECK(x_in.device().is_cpu(), "bias_act (cpu): x must be a CPU tensor, got ",
              x_in.device());
  TORCH_CHECK(at::isFloatingType(x_in.scalar_type()),
              "bias_act: x must be a floating point tensor, got ", x_in.scalar_type());
  TORCH_CHECK(mode >= 0 && mode < kNumModes, "bias_act: unknown mode ", mode);
  TORCH_CHECK(act >= 0 && act < kNumActs, "bias_act: unknown activation code ", act);
  TORCH_CHECK(std::isfinite(alpha) && std::isfinite(gain), "bias_act: alpha and gain must be finite");

  const at::Tensor x = x_in.contiguous();
  const bool has_bias = b_in.numel() > 0;
  BiasActShape shape;
  if (has_bias) {
    TORCH_CHECK(x.dim() > 0, "bias_act: a bias needs x with at least one dimension");
    TORCH_CHECK(dim >= 0 && dim < x.dim(), "bias_act: dim ", dim, " out of range for x with ",
                x.dim(), " dimensions");
    TORCH_CHECK(b_in.dim() == 1 && b_in.size(0) == x.size(dim), "bias_act: b must be 1-D with ",
                x.size(dim), " (= x.size(", dim, ")) entries, got shape ", b_in.sizes());
    TORCH_CHECK(b_in.device() == x.device() && b_in.scalar_type() == x.scalar_type(),
                "bias_act: b must have the device and dtype of x");
    for (int64_t i = 0; i < dim; ++i) shape.outer *= x.size(i);
    shape.channels = x.size(dim);
    for (int64_t i = dim + 1; i < x.dim(); ++i) shape.inner *= x.size(i);
  }
  const at::Tensor b = has_bias ? b_in.contiguous() : b_in;

  const Mode m = static_cast<Mode>(mode);
  at::Tensor dy = dy_in;
  if (m != Mode::Forward) {
    TORCH_CHECK(dy_in.sizes() == x.sizes(), "bias_act: dy must have the shape of x ", x.sizes(),
                ", got ", dy_in.sizes());
    TORCH_CHECK(dy_in.device() == x.device() && dy_in.scalar_type() == x.scalar_type(),
                "bias_act: dy must have the device and dtype of x");
    dy = dy_in.contiguous();
  }

  at::Tensor y = at::empty_like(x, at::MemoryFormat::Contiguous);
  if (x.numel() == 0) return y;

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "bias_act_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    BiasActParams<acc_t> p{acc_t(alpha), acc_t(gain), acc_t(clamp)};
    bias_act_dispatch<scalar_t>(static_cast<Act>(act), m, clamp >= 0, x, b, dy, y, shape, p);
  });
  return y;
}

// ---------------------------------------------------------------------------------------
// upfirdn2d
// ---------------------------------------------------------------------------------------
//
// out[oy, ox] = sum_{ky, kx} w[ky, kx] * xup[oy * downy + ky - pady0, ox * downx + kx - padx0]
// with xup the zero-upsampled input and w the (flipped unless `flip`) filter times gain.
//
// Polyphase evaluation: only taps that land on real input pixels are visited.
// Vertically, each output row picks its taps (ky, iy) directly. Horizontally, output column
// ox = P * q + p (phase p) hits real pixels with the same taps for every q, at input column
// q * S + c(p, kx), where P = upx / g, S = downx / g, g = gcd(upx, downx). So each phase is a
// small dense correlation with stride S over a zero-padded copy of the input rows.

struct ColTap {
  int kx;
  int64_t c;  // input column read by q = 0
};

struct Phase {
  int64_t count = 0;  // outputs in this phase: ox = p, p + P, ...
  std::vector<ColTap> taps;
};

struct UpFirDnConfig {
  int64_t planes, in_h, in_w, out_h, out_w;
  int64_t upx, upy, downx, downy, padx0, pady0;
  int64_t fh, fw;
};

// Column structure shared by every row of every plane.
struct ColumnPlan {
  int64_t P = 1, S = 1;
  std::vector<Phase> phases;
  int64_t xlo = 0, xhi = 0;  // input columns [xlo, xhi) read by any tap (may exceed the image)
};

ColumnPlan plan_columns(const UpFirDnConfig& cfg) {
  ColumnPlan plan;
  const int64_t g = std::gcd(cfg.upx, cfg.downx);
  plan.P = cfg.upx / g;
  plan.S = cfg.downx / g;
  plan.phases.resize(plan.P);
  bool any = false;
  for (int64_t p = 0; p < plan.P; ++p) {
    Phase& ph = plan.phases[p];
    ph.count = p < cfg.out_w ? ceil_div(cfg.out_w - p, plan.P) : 0;
    if (ph.count == 0) continue;
    for (int kx = 0; kx < cfg.fw; ++kx) {
      const int64_t pos = p * cfg.downx + kx - cfg.padx0;  // column in the upsampled image
      if (floor_mod(pos, cfg.upx) != 0) continue;         // lands on an inserted zero
      const int64_t c = floor_div(pos, cfg.upx);
      const int64_t last = (ph.count - 1) * plan.S + c;
      if (last < 0 || c >= cfg.in_w) continue;  // every read of this tap is outside the image
      ph.taps.push_back({kx, c});
      plan.xlo = any ? std::min(plan.xlo, c) : c;
      plan.xhi = any ? std::max(plan.xhi, last + 1) : last + 1;
      any = true;
    }
  }
  return plan;
}

// Input rows [iy_lo, iy_hi) that output rows [oy0, oy1) can read, clipped to the image.
std::pair<int64_t, int64_t> input_rows_for(const UpFirDnConfig& cfg, int64_t oy0, int64_t oy1) {
  const int64_t u_lo = oy0 * cfg.downy - cfg.pady0;
  const int64_t u_hi = (oy1 - 1) * cfg.downy - cfg.pady0 + cfg.fh - 1;
  const int64_t lo = std::max<int64_t>(0, floor_div(u_lo + cfg.upy - 1, cfg.upy));
  const int64_t hi = std::min<int64_t>(cfg.in_h, floor_div(u_hi, cfg.upy) + 1);
  return {lo, std::max(lo, hi)};
}

template <typename acc_t>
struct Tap2d {
  const acc_t* src;  // buffer position read by q = 0
  acc_t w;
};

// Accumulators per block of outputs: four AVX-512 registers' worth, kept in registers
// across all taps so each tap costs one load and one FMA per vector.
template <typename acc_t>
constexpr int64_t kBlock = 256 / sizeof(acc_t);

// One phase of one output row: out[q * P] = sum_t w_t * src_t[q * S] for q in [0, count).
// kS / kP are compile-time strides for the common cases (0 = use the runtime value), which
// keeps the inner loop contiguous and vectorisable for filter2d, upsample and downsample.
template <int kS, int kP, typename scalar_t, typename acc_t>
void correlate_phase(const Tap2d<acc_t>* taps, int64_t ntaps, int64_t count, int64_t s_rt,
                     int64_t p_rt, scalar_t* __restrict__ out) {
  constexpr int64_t B = kBlock<acc_t>;
  const int64_t S = kS > 0 ? kS : s_rt;
  const int64_t P = kP > 0 ? kP : p_rt;
  for (int64_t q0 = 0; q0 < count; q0 += B) {
    acc_t acc[B];
#pragma omp simd
    for (int64_t j = 0; j < B; ++j) acc[j] = acc_t(0);
    for (int64_t t = 0; t < ntaps; ++t) {
      const acc_t* __restrict__ src = taps[t].src + q0 * S;
      const acc_t w = taps[t].w;
#pragma omp simd
      for (int64_t j = 0; j < B; ++j) acc[j] += w * src[j * S];
    }
    const int64_t n = std::min(B, count - q0);
    scalar_t* __restrict__ dst = out + q0 * P;
#pragma omp simd
    for (int64_t j = 0; j < n; ++j) dst[j * P] = scalar_t(acc[j]);
  }
}

template <typename scalar_t, typename acc_t>
void correlate_phase_dispatch(const Tap2d<acc_t>* taps, int64_t ntaps, int64_t count, int64_t S,
                              int64_t P, scalar_t* out) {
  if (S == 1 && P == 1) return correlate_phase<1, 1>(taps, ntaps, count, S, P, out);  // filter
  if (S == 2 && P == 1) return correlate_phase<2, 1>(taps, ntaps, count, S, P, out);  // down 2
  if (S == 1) return correlate_phase<1, 0>(taps, ntaps, count, S, P, out);            // up
  correlate_phase<0, 0>(taps, ntaps, count, S, P, out);
}

template <typename scalar_t>
void upfirdn2d_kernel(const at::Tensor& x, const std::vector<float>& weights,
                      const UpFirDnConfig& cfg, at::Tensor& y) {
  using acc_t = at::opmath_type<scalar_t>;
  const ColumnPlan plan = plan_columns(cfg);
  const int64_t B = kBlock<acc_t>;
  // Buffer columns cover [xlo, xhi) plus one block of slack so the last (partial) block of
  // outputs may read past the end without bounds checks.
  const int64_t buf_w = (plan.xhi - plan.xlo) + B * plan.S;

  // Work items: (plane, block of output rows), each around kGrainElements outputs.
  const int64_t rows_per_item =
      std::clamp<int64_t>(kGrainElements / std::max<int64_t>(cfg.out_w, 1), 1, cfg.out_h);
  const int64_t items_per_plane = ceil_div(cfg.out_h, rows_per_item);
  const int64_t outputs_per_item = rows_per_item * cfg.out_w;
  const int64_t grain = std::max<int64_t>(1, kGrainElements / outputs_per_item);

  const scalar_t* xp = x.const_data_ptr<scalar_t>();
  scalar_t* yp = y.mutable_data_ptr<scalar_t>();

  at::parallel_for(0, cfg.planes * items_per_plane, grain, [&](int64_t first, int64_t last) {
    std::vector<acc_t> buf;
    std::vector<Tap2d<acc_t>> taps;
    taps.reserve(cfg.fh * cfg.fw);
    for (int64_t item = first; item < last; ++item) {
      const int64_t plane = item / items_per_plane;
      const int64_t oy0 = (item % items_per_plane) * rows_per_item;
      const int64_t oy1 = std::min(oy0 + rows_per_item, cfg.out_h);
      const auto [iy_lo, iy_hi] = input_rows_for(cfg, oy0, oy1);

      // Copy the needed input rows into zero-padded accumulator-typed rows (also converts
      // half / bfloat16 once instead of once per tap).
      buf.assign((iy_hi - iy_lo) * buf_w, acc_t(0));
      const int64_t col_lo = std::max<int64_t>(plan.xlo, 0);
      const int64_t col_hi = std::min<int64_t>(plan.xhi, cfg.in_w);
      for (int64_t iy = iy_lo; iy < iy_hi; ++iy) {
        const scalar_t* src = xp + (plane * cfg.in_h + iy) * cfg.in_w;
        acc_t* dst = buf.data() + (iy - iy_lo) * buf_w - plan.xlo;
        for (int64_t ix = col_lo; ix < col_hi; ++ix) dst[ix] = acc_t(src[ix]);
      }

      for (int64_t oy = oy0; oy < oy1; ++oy) {
        scalar_t* out_row = yp + (plane * cfg.out_h + oy) * cfg.out_w;
        const int64_t base = oy * cfg.downy - cfg.pady0;  // upsampled row read by ky = 0
        for (int64_t p = 0; p < plan.P; ++p) {
          const Phase& ph = plan.phases[p];
          if (ph.count == 0) continue;
          taps.clear();
          // First vertical tap that lands on a real row, then every upy-th one.
          for (int64_t ky = floor_mod(-base, cfg.upy); ky < cfg.fh; ky += cfg.upy) {
            const int64_t iy = (base + ky) / cfg.upy;  // exact: upy divides base + ky
            if (iy < iy_lo || iy >= iy_hi) continue;
            const acc_t* row = buf.data() + (iy - iy_lo) * buf_w - plan.xlo;
            for (const ColTap& ct : ph.taps) {
              taps.push_back({row + ct.c, acc_t(weights[ky * cfg.fw + ct.kx])});
            }
          }
          correlate_phase_dispatch<scalar_t, acc_t>(taps.data(), int64_t(taps.size()), ph.count,
                                                    plan.S, plan.P, out_row + p);
        }
      }
    }
  });
}

at::Tensor upfirdn2d(const at::Tensor& x_in, const at::Tensor& f_in, int64_t upx, int64_t upy,
                     int64_t downx, int64_t downy, int64_t padx0, int64_t padx1, int64_t pady0,
                     int64_t pady1, bool flip, double gain) {
  TORCH_CHECK(x_in.device().is_cpu() && f_in.device().is_cpu(),
              "upfirdn2d (cpu): x and f must be CPU tensors");
  TORCH_CHECK(x_in.dim() == 4, "upfirdn2d: x must be [N, C, H, W], got shape ", x_in.sizes());
  TORCH_CHECK(at::isFloatingType(x_in.scalar_type()),
              "upfirdn2d: x must be a floating point tensor, got ", x_in.scalar_type());
  TORCH_CHECK(f_in.dim() == 2 && f_in.numel() > 0,
              "upfirdn2d: f must be a non-empty 2-D [fh, fw] filter, got shape ", f_in.sizes());
  TORCH_CHECK(f_in.scalar_type() == at::kFloat, "upfirdn2d: f must be float32, got ",
              f_in.scalar_type());
  TORCH_CHECK(upx >= 1 && upy >= 1 && downx >= 1 && downy >= 1,
              "upfirdn2d: up and down factors must be >= 1, got up=(", upx, ", ", upy,
              ") down=(", downx, ", ", downy, ")");

  const at::Tensor x = x_in.contiguous();
  const at::Tensor f = f_in.contiguous();
  UpFirDnConfig cfg;
  cfg.planes = x.size(0) * x.size(1);
  cfg.in_h = x.size(2);
  cfg.in_w = x.size(3);
  cfg.upx = upx, cfg.upy = upy, cfg.downx = downx, cfg.downy = downy;
  cfg.padx0 = padx0, cfg.pady0 = pady0;
  cfg.fh = f.size(0);
  cfg.fw = f.size(1);
  cfg.out_w = floor_div(cfg.in_w * upx + padx0 + padx1 - cfg.fw, downx) + 1;
  cfg.out_h = floor_div(cfg.in_h * upy + pady0 + pady1 - cfg.fh, downy) + 1;
  TORCH_CHECK(cfg.out_w >= 1 && cfg.out_h >= 1, "upfirdn2d: empty output (", cfg.out_h, "x",
              cfg.out_w, ") for input ", x.sizes(), ", filter ", f.sizes(), " and padding (",
              padx0, ", ", padx1, ", ", pady0, ", ", pady1, ")");

  // Correlation weights: flip the taps for a true convolution, and fold in the gain in
  // float32 exactly like the reference does (f * gain, then cast to x's dtype).
  const float* fp = f.const_data_ptr<float>();
  std::vector<float> weights(cfg.fh * cfg.fw);
  for (int64_t ky = 0; ky < cfg.fh; ++ky) {
    for (int64_t kx = 0; kx < cfg.fw; ++kx) {
      const int64_t src = flip ? ky * cfg.fw + kx : (cfg.fh - 1 - ky) * cfg.fw + (cfg.fw - 1 - kx);
      weights[ky * cfg.fw + kx] = fp[src] * static_cast<float>(gain);
    }
  }

  at::Tensor y = at::empty({x.size(0), x.size(1), cfg.out_h, cfg.out_w}, x.options());
  if (y.numel() == 0) return y;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "upfirdn2d_cpu", [&] {
    upfirdn2d_kernel<scalar_t>(x, weights, cfg, y);
  });
  return y;
}

}  // namespace
}  // namespace ganbrush

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "ganbrush StyleGAN2 ops: CPU kernels";
  m.def("bias_act", &ganbrush::bias_act, "Fused bias + activation + gain + clamp (CPU)",
        py::arg("x"), py::arg("b"), py::arg("dy"), py::arg("mode"), py::arg("dim"), py::arg("act"),
        py::arg("alpha"), py::arg("gain"), py::arg("clamp"));
  m.def("upfirdn2d", &ganbrush::upfirdn2d, "Upsample, FIR filter, downsample (CPU)", py::arg("x"),
        py::arg("f"), py::arg("upx"), py::arg("upy"), py::arg("downx"), py::arg("downy"),
        py::arg("padx0"), py::arg("padx1"), py::arg("pady0"), py::arg("pady1"), py::arg("flip"),
        py::arg("gain"));
}
