// CPU kernels for the StyleGAN2 custom ops: fused bias + activation and upfirdn2d.
//
// The semantics are defined by the pure-PyTorch references in bias_act.py and upfirdn2d.py;
// this file only has to be faster. Both ops are memory- or load-bound, so the kernels aim
// for one pass over memory, vectorised inner loops over contiguous data (`#pragma omp simd`
// with everything that varies per element fixed at compile time for bias_act; explicit
// SIMD vectors with register accumulators for upfirdn2d), and coarse-grained
// at::parallel_for over independent rows / image planes.
//
// half and bfloat16 are computed in float (at::opmath_type); float and double in themselves.

// Narrow includes instead of <torch/extension.h>: the full C++ frontend header alone costs
// ~15 s of compile time on every first build.
#include <torch/csrc/utils/pybind.h>

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/add.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <cstdint>
#include <numeric>
#include <vector>

#include "ops_checks.h"
#include "ops_math.h"

namespace ganbrush {
namespace {

// Elements per parallel task: large enough to amortise scheduling, small enough that the
// two-core machine (and bigger ones) get balanced work on StyleGAN-sized tensors.
constexpr int64_t kGrainElements = 32768;

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Modulo that is correct for negative numerators (paddings can be negative, so tap positions
// can be left of the image); floor_div is in ops_checks.h.
int64_t floor_mod(int64_t a, int64_t b) { return a - floor_div(a, b) * b; }

// Runs fn(row, begin, end) over `rows` rows of `row_len` elements each. Long rows are cut
// into chunks so a single huge row still spreads over all threads. Not a template on purpose:
// every at::parallel_for instantiation emits its own OpenMP region, which adds up in build
// time, while one indirect call per chunk is free.
void parallel_rows(int64_t rows, int64_t row_len,
                   c10::function_ref<void(int64_t, int64_t, int64_t)> fn) {
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

// Below this many contiguous elements per channel (bias along one of the last dimensions,
// e.g. [N, C] fully connected layers) the per-(outer, channel) rows are too short to
// vectorise. Those (small) tensors get the bias added by a broadcasting add first and then
// take the flat bias-free path: one extra pass, but no second family of kernel
// instantiations (compile time matters for the JIT build).
constexpr int64_t kMinBiasRow = 16;

// One contiguous span with a constant bias: the hot loop. A and M are template parameters
// so the activation and mode branches vanish and the loop vectorises.
template <Act A, Mode M, typename scalar_t, typename acc_t = at::opmath_type<scalar_t>>
void bias_act_span(const scalar_t* __restrict__ x, const scalar_t* __restrict__ dy,
                   scalar_t* __restrict__ y, int64_t n, acc_t bias,
                   const BiasActParams<acc_t>& p) {
  const BiasActParams<acc_t> q = p;  // local copy: provably loop-invariant
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    const acc_t g = M == Mode::Forward ? acc_t(0) : acc_t(dy[i]);
    y[i] = scalar_t(bias_act_element<A, M>(acc_t(x[i]) + bias, g, q));
  }
}

template <typename scalar_t, typename acc_t = at::opmath_type<scalar_t>>
using BiasActSpanFn = void (*)(const scalar_t*, const scalar_t*, scalar_t*, int64_t, acc_t,
                               const BiasActParams<acc_t>&);

// The span kernel for a runtime (act, mode) pair; only these small loops are instantiated
// per activation and mode, everything around them exists once per dtype.
template <typename scalar_t, Act A>
BiasActSpanFn<scalar_t> span_for_mode(Mode mode) {
  switch (mode) {
    case Mode::Forward: return &bias_act_span<A, Mode::Forward, scalar_t>;
    case Mode::Grad: return &bias_act_span<A, Mode::Grad, scalar_t>;
    case Mode::Grad2: return &bias_act_span<A, Mode::Grad2, scalar_t>;
  }
  return nullptr;
}

template <typename scalar_t>
BiasActSpanFn<scalar_t> span_for(Act act, Mode mode) {
  switch (act) {
    case Act::Linear: return span_for_mode<scalar_t, Act::Linear>(mode);
    case Act::Relu: return span_for_mode<scalar_t, Act::Relu>(mode);
    case Act::Lrelu: return span_for_mode<scalar_t, Act::Lrelu>(mode);
    case Act::Tanh: return span_for_mode<scalar_t, Act::Tanh>(mode);
    case Act::Sigmoid: return span_for_mode<scalar_t, Act::Sigmoid>(mode);
    case Act::Elu: return span_for_mode<scalar_t, Act::Elu>(mode);
    case Act::Selu: return span_for_mode<scalar_t, Act::Selu>(mode);
    case Act::Softplus: return span_for_mode<scalar_t, Act::Softplus>(mode);
    case Act::Swish: return span_for_mode<scalar_t, Act::Swish>(mode);
  }
  return nullptr;
}

template <typename scalar_t>
void bias_act_run(Act act, Mode mode, const at::Tensor& x, const at::Tensor& b,
                  const at::Tensor& dy, at::Tensor& y, const BiasActShape& shape,
                  const BiasActParams<at::opmath_type<scalar_t>>& p) {
  using acc_t = at::opmath_type<scalar_t>;
  const BiasActSpanFn<scalar_t> span = span_for<scalar_t>(act, mode);
  const scalar_t* xp = x.const_data_ptr<scalar_t>();
  const scalar_t* dyp = mode == Mode::Forward ? nullptr : dy.const_data_ptr<scalar_t>();
  scalar_t* yp = y.mutable_data_ptr<scalar_t>();
  auto run_span = [&](int64_t off, int64_t n, acc_t bias) {
    span(xp + off, dyp ? dyp + off : nullptr, yp + off, n, bias, p);
  };

  if (b.numel() == 0) {
    // No bias: the whole tensor is one flat span.
    parallel_rows(1, x.numel(), [&](int64_t, int64_t begin, int64_t end) {
      run_span(begin, end - begin, acc_t(0));
    });
    return;
  }
  // Rows of `inner` elements, one per (outer, channel) pair, each with a constant bias.
  const scalar_t* bp = b.const_data_ptr<scalar_t>();
  parallel_rows(shape.outer * shape.channels, shape.inner,
                [&](int64_t row, int64_t begin, int64_t end) {
                  run_span(row * shape.inner + begin, end - begin,
                           acc_t(bp[row % shape.channels]));
                });
}

at::Tensor bias_act(const at::Tensor& x_in, const at::Tensor& b_in, const at::Tensor& dy_in,
                    int64_t mode, int64_t dim, int64_t act, double alpha, double gain,
                    double clamp) {
  TORCH_CHECK(x_in.device().is_cpu(), "bias_act (cpu): x must be a CPU tensor, got ",
              x_in.device());
  check_bias_act_args(x_in, mode, act, alpha, gain);

  at::Tensor x = x_in.contiguous();
  at::Tensor b = b_in;
  BiasActShape shape;
  if (b_in.numel() > 0) {
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
    if (shape.inner >= kMinBiasRow) {
      b = b_in.contiguous();
    } else {
      std::vector<int64_t> bias_view(x.dim() - dim, 1);  // [C, 1, ...] broadcasts along dim
      bias_view[0] = shape.channels;
      x = at::add(x, b_in.view(bias_view));
      b = b_in.new_empty({0});
    }
  }

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
    const auto p = make_bias_act_params<acc_t>(alpha, gain, clamp);
    bias_act_run<scalar_t>(static_cast<Act>(act), m, x, b, dy, y, shape, p);
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
// Polyphase evaluation, so only taps that land on real input pixels are visited:
// - Vertically, each output row picks its taps (ky, iy) directly.
// - Horizontally, output column ox = P * q + p (phase p) hits real pixels with the same taps
//   for every q, at input column q * S + c(p, kx), where g = gcd(upx, downx), P = upx / g and
//   S = downx / g. Each phase is therefore a small dense correlation with stride S.
// - The input rows an output-row block needs are copied once into a zero-padded buffer in the
//   accumulation type, split into S column phases ("de-interleaved"), so that every tap reads
//   contiguous memory with stride 1 and no bounds checks. The correlation then runs on
//   explicit SIMD vectors, a few vectors of outputs at a time with all taps accumulated in
//   registers.

struct ColTap {
  int64_t kx;
  int64_t c;       // input column read by q = 0
  int64_t offset;  // where that column sits in a row of the de-interleaved buffer
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

// Column structure shared by every row of every plane, including the layout of the buffer
// rows (see RowBuffer): S sub-rows of sub_w elements each.
struct ColumnPlan {
  int64_t P = 1, S = 1;
  std::vector<Phase> phases;
  int64_t xlo = 0, xhi = 0;  // input columns [xlo, xhi) read by any tap (may exceed the image)
  int64_t sub_w = 0;
  int64_t row_stride() const { return S * sub_w; }
};

// `slack`: extra elements at the end of every sub-row, so vector loads may run past the
// last output of a row.
ColumnPlan plan_columns(const UpFirDnConfig& cfg, int64_t slack) {
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
    for (int64_t kx = 0; kx < cfg.fw; ++kx) {
      const int64_t pos = p * cfg.downx + kx - cfg.padx0;  // column in the upsampled image
      if (floor_mod(pos, cfg.upx) != 0) continue;         // lands on an inserted zero
      const int64_t c = floor_div(pos, cfg.upx);
      const int64_t last = (ph.count - 1) * plan.S + c;
      if (last < 0 || c >= cfg.in_w) continue;  // every read of this tap is outside the image
      ph.taps.push_back({kx, c, 0});
      plan.xlo = any ? std::min(plan.xlo, c) : c;
      plan.xhi = any ? std::max(plan.xhi, last + 1) : last + 1;
      any = true;
    }
  }
  plan.sub_w = ceil_div(plan.xhi - plan.xlo, plan.S) + slack;
  for (Phase& ph : plan.phases) {
    for (ColTap& ct : ph.taps) {
      const int64_t j = ct.c - plan.xlo;
      ct.offset = (j % plan.S) * plan.sub_w + j / plan.S;
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

// Fixed-width SIMD vectors through the GCC/Clang vector extension: plain arithmetic on them
// compiles to packed instructions for whatever ISA -march selects. 32 bytes matches the
// 256-bit vectors GCC prefers on AVX-512 parts (and is two SSE registers elsewhere).
constexpr int kVectorBytes = 32;
template <typename T>
struct Simd;
template <>
struct Simd<float> {
  typedef float V __attribute__((vector_size(kVectorBytes)));
};
template <>
struct Simd<double> {
  typedef double V __attribute__((vector_size(kVectorBytes)));
};
template <typename T>
constexpr int64_t kLanes = kVectorBytes / sizeof(T);

template <typename T, typename V = typename Simd<T>::V>
inline V load_vector(const T* p) {
  V v;
  std::memcpy(&v, p, sizeof(V));  // unaligned load
  return v;
}

template <typename T, typename V = typename Simd<T>::V>
inline void store_vector(T* p, V v) {
  std::memcpy(p, &v, sizeof(V));
}

// All lanes = s. (Not `V{} + s`: the compiler must keep that addition because 0 + -0 = +0.)
template <typename T, typename V = typename Simd<T>::V>
inline V broadcast(T s) {
  V v;
  for (int64_t i = 0; i < kLanes<T>; ++i) v[i] = s;
  return v;
}

// One vertical tap of one output row: an input row of the buffer and the filter row
// weights for it (one weight per column tap of the current phase).
template <typename acc_t>
struct RowSource {
  const acc_t* row;
  const acc_t* w;
};

// dst[q0 + i] = sum_{r, c} rows[r].w[c] * rows[r].row[offsets[c] + q0 + i] for i < U * lanes,
// i.e. U vectors of consecutive outputs with all taps accumulated in registers: each tap
// costs one broadcast and, per vector, one load and one FMA. Narrow blocks (U < 4) spread
// the filter rows over K partial sums so that there are always 4 independent FMA chains
// (one chain would wait out the FMA latency on every tap of an 8-pixel-wide image).
// kCols > 0 fixes the number of column taps at compile time (fully unrolled inner loop).
template <int U, int kCols, typename acc_t>
inline void correlate_block(const RowSource<acc_t>* rows, int64_t nrows, const int64_t* offsets,
                            int64_t ncols_rt, int64_t q0, acc_t* dst) {
  using V = typename Simd<acc_t>::V;
  constexpr int64_t L = kLanes<acc_t>;
  constexpr int K = 4 / U;
  const int64_t ncols = kCols > 0 ? kCols : ncols_rt;

  // Adds the taps of one filter row into U accumulators.
  auto add_row = [&](const RowSource<acc_t>& rs, V* part) {
    const acc_t* row = rs.row + q0;
    for (int64_t c = 0; c < ncols; ++c) {
      const acc_t* src = row + offsets[c];
      const V wv = broadcast(rs.w[c]);
      for (int u = 0; u < U; ++u) part[u] += wv * load_vector(src + u * L);
    }
  };

  V acc[K][U];
  for (int k = 0; k < K; ++k) {
    for (int u = 0; u < U; ++u) acc[k][u] = V{};
  }
  int64_t r = 0;
  for (; r + K <= nrows; r += K) {
    for (int k = 0; k < K; ++k) add_row(rows[r + k], acc[k]);  // constant k: stays in registers
  }
  for (; r < nrows; ++r) add_row(rows[r], acc[0]);
  for (int u = 0; u < U; ++u) {
    V sum = acc[0][u];
    for (int k = 1; k < K; ++k) sum += acc[k][u];
    store_vector(dst + q0 + u * L, sum);
  }
}

// correlate_block over a whole output row: dst[q] for q < round_up(count, lanes). Reads up to
// lanes - 1 elements past `count` in every source row (the buffer has that slack) and writes
// as far in dst.
template <int kCols, typename acc_t>
void correlate_row_impl(const RowSource<acc_t>* rows, int64_t nrows, const int64_t* offsets,
                        int64_t ncols, int64_t count, acc_t* dst) {
  constexpr int64_t L = kLanes<acc_t>;
  const int64_t nvec = ceil_div(count, L);
  int64_t v = 0;
  for (; v + 4 <= nvec; v += 4) {
    correlate_block<4, kCols>(rows, nrows, offsets, ncols, v * L, dst);
  }
  if (v + 2 <= nvec) {
    correlate_block<2, kCols>(rows, nrows, offsets, ncols, v * L, dst);
    v += 2;
  }
  if (v < nvec) correlate_block<1, kCols>(rows, nrows, offsets, ncols, v * L, dst);
}

// Unrolled versions for the column-tap counts of the StyleGAN filters: 4 ([1, 3, 3, 1] filter
// and downsampling) and 2 (each phase of a 2x upsample with it).
template <typename acc_t>
void correlate_row(const RowSource<acc_t>* rows, int64_t nrows, const int64_t* offsets,
                   int64_t ncols, int64_t count, acc_t* dst) {
  switch (ncols) {
    case 2: return correlate_row_impl<2>(rows, nrows, offsets, ncols, count, dst);
    case 4: return correlate_row_impl<4>(rows, nrows, offsets, ncols, count, dst);
    default: return correlate_row_impl<0>(rows, nrows, offsets, ncols, count, dst);
  }
}

// Zero-padded, de-interleaved copy of the input rows one work item needs, in the
// accumulation type (half / bfloat16 are converted once here instead of once per tap).
// Input column ix of a row lives in sub-row (ix - xlo) % S at index (ix - xlo) / S, so a tap
// reading columns c, c + S, c + 2S, ... reads one sub-row contiguously.
template <typename acc_t>
class RowBuffer {
 public:
  RowBuffer(const ColumnPlan& plan, int64_t in_w) : plan_(plan), in_w_(in_w) {
    // Sub-row s holds input columns xlo + s + k * S; the ks inside the image are the same
    // for every row, so work them out once.
    const int64_t S = plan.S;
    const int64_t col_lo = std::max<int64_t>(plan.xlo, 0);
    const int64_t col_hi = std::min<int64_t>(plan.xhi, in_w);
    for (int64_t s = 0; s < S; ++s) {
      const int64_t first = plan.xlo + s;  // input column of sub-row element 0
      const int64_t k_lo = first >= col_lo ? 0 : ceil_div(col_lo - first, S);
      const int64_t k_hi = col_hi > first ? ceil_div(col_hi - first, S) : 0;
      if (k_hi > k_lo) copies_.push_back({s * plan.sub_w + k_lo, first + k_lo * S, k_hi - k_lo});
    }
  }

  template <typename scalar_t>
  void fill(const scalar_t* plane, int64_t iy_lo, int64_t iy_hi) {
    const int64_t S = plan_.S, stride = plan_.row_stride();
    iy_lo_ = iy_lo;
    data_.assign((iy_hi - iy_lo) * stride, acc_t(0));
    for (int64_t iy = iy_lo; iy < iy_hi; ++iy) {
      const scalar_t* src_row = plane + iy * in_w_;
      acc_t* row = data_.data() + (iy - iy_lo) * stride;
      for (const Copy& c : copies_) {
        const scalar_t* src = src_row + c.src;
        acc_t* dst = row + c.dst;
        if (S == 1) {  // the common case: a plain (vectorised) copy / conversion
          for (int64_t k = 0; k < c.count; ++k) dst[k] = acc_t(src[k]);
        } else {
          for (int64_t k = 0; k < c.count; ++k) dst[k] = acc_t(src[k * S]);
        }
      }
    }
  }

  // Start of input row iy; add ColTap::offset to get a tap's source.
  const acc_t* row(int64_t iy) const {
    return data_.data() + (iy - iy_lo_) * plan_.row_stride();
  }

 private:
  struct Copy {
    int64_t dst;    // offset in a buffer row
    int64_t src;    // first input column
    int64_t count;  // elements, read with stride S
  };
  const ColumnPlan& plan_;
  int64_t in_w_;
  std::vector<Copy> copies_;
  int64_t iy_lo_ = 0;
  std::vector<acc_t> data_;
};

// Writes one phase of an output row: dst[q * P] = src[q], converting to the output dtype.
template <typename scalar_t, typename acc_t>
void store_phase(const acc_t* __restrict__ src, int64_t count, int64_t P,
                 scalar_t* __restrict__ dst) {
  if (P == 1) {
#pragma omp simd
    for (int64_t q = 0; q < count; ++q) dst[q] = scalar_t(src[q]);
  } else {
    for (int64_t q = 0; q < count; ++q) dst[q * P] = scalar_t(src[q]);
  }
}

// The column taps of one horizontal phase in the form correlate_row wants: buffer offsets,
// and the weights laid out [ky][column tap] so each filter row is contiguous.
template <typename acc_t>
struct PhaseTaps {
  std::vector<int64_t> offsets;
  std::vector<acc_t> weights;

  PhaseTaps(const Phase& ph, const std::vector<float>& filter, int64_t fh, int64_t fw) {
    for (const ColTap& ct : ph.taps) offsets.push_back(ct.offset);
    for (int64_t ky = 0; ky < fh; ++ky) {
      for (const ColTap& ct : ph.taps) weights.push_back(acc_t(filter[ky * fw + ct.kx]));
    }
  }
  int64_t size() const { return int64_t(offsets.size()); }
  const acc_t* row_weights(int64_t ky) const { return weights.data() + ky * size(); }
};

template <typename scalar_t>
void upfirdn2d_kernel(const at::Tensor& x, const std::vector<float>& weights,
                      const UpFirDnConfig& cfg, at::Tensor& y) {
  using acc_t = at::opmath_type<scalar_t>;
  constexpr int64_t L = kLanes<acc_t>;
  const ColumnPlan plan = plan_columns(cfg, L);
  std::vector<PhaseTaps<acc_t>> phase_taps;
  for (const Phase& ph : plan.phases) phase_taps.emplace_back(ph, weights, cfg.fh, cfg.fw);

  // The first vertical tap of every output row that lands on an input row (the integer
  // divisions hoisted out of the row loop). Later ones follow every upy taps / 1 input row.
  std::vector<std::pair<int64_t, int64_t>> first_tap(cfg.out_h);  // (ky, iy)
  for (int64_t oy = 0; oy < cfg.out_h; ++oy) {
    const int64_t base = oy * cfg.downy - cfg.pady0;  // upsampled row read by ky = 0
    const int64_t ky = floor_mod(-base, cfg.upy);
    first_tap[oy] = {ky, floor_div(base + ky, cfg.upy)};
  }

  // Work items: (plane, block of output rows), each around kGrainElements outputs.
  const int64_t rows_per_item = std::clamp<int64_t>(kGrainElements / cfg.out_w, 1, cfg.out_h);
  const int64_t items_per_plane = ceil_div(cfg.out_h, rows_per_item);
  const int64_t grain = std::max<int64_t>(1, kGrainElements / (rows_per_item * cfg.out_w));
  const int64_t max_count = ceil_div(cfg.out_w, plan.P);

  const scalar_t* xp = x.const_data_ptr<scalar_t>();
  scalar_t* yp = y.mutable_data_ptr<scalar_t>();

  at::parallel_for(0, cfg.planes * items_per_plane, grain, [&](int64_t first, int64_t last) {
    RowBuffer<acc_t> buf(plan, cfg.in_w);
    std::vector<std::pair<int64_t, const acc_t*>> row_taps;  // (ky, buffer row)
    std::vector<RowSource<acc_t>> rows;
    row_taps.reserve(cfg.fh);
    rows.reserve(cfg.fh);
    std::vector<acc_t> row_out(ceil_div(max_count, L) * L);

    for (int64_t item = first; item < last; ++item) {
      const int64_t plane = item / items_per_plane;
      const int64_t oy0 = (item % items_per_plane) * rows_per_item;
      const int64_t oy1 = std::min(oy0 + rows_per_item, cfg.out_h);
      const auto [iy_lo, iy_hi] = input_rows_for(cfg, oy0, oy1);
      buf.fill(xp + plane * cfg.in_h * cfg.in_w, iy_lo, iy_hi);

      for (int64_t oy = oy0; oy < oy1; ++oy) {
        // Vertical taps that land on real input rows.
        row_taps.clear();
        auto [ky, iy] = first_tap[oy];
        for (; ky < cfg.fh; ky += cfg.upy, ++iy) {
          if (iy >= iy_lo && iy < iy_hi) row_taps.push_back({ky, buf.row(iy)});
        }
        scalar_t* out_row = yp + (plane * cfg.out_h + oy) * cfg.out_w;
        for (int64_t p = 0; p < plan.P; ++p) {
          const PhaseTaps<acc_t>& pt = phase_taps[p];
          const int64_t count = plan.phases[p].count;
          if (count == 0) continue;
          rows.clear();
          for (const auto& [tap_ky, row] : row_taps) rows.push_back({row, pt.row_weights(tap_ky)});
          correlate_row(rows.data(), int64_t(rows.size()), pt.offsets.data(), pt.size(), count,
                        row_out.data());
          store_phase(row_out.data(), count, plan.P, out_row + p);
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
  check_upfirdn2d_args(x_in, f_in, upx, upy, downx, downy);

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
