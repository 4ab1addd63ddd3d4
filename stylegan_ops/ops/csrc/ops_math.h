// Activation math shared by the CPU and CUDA kernels of bias_act.
//
// Each activation provides f (value), d1 (first derivative) and d2 (second derivative) in a
// form that matches the PyTorch functions used by the reference implementation in
// bias_act.py, including their choices at kinks (relu'(0) = 0, leaky_relu'(0) = alpha) and
// softplus's linear regime above threshold 20.
//
// Everything is header-only and `__host__ __device__` under nvcc, so the CPU and CUDA
// builds compute exactly the same formulas.
#pragma once

#include <math.h>

#ifdef __CUDACC__
#define OPS_HD __host__ __device__ __forceinline__
#else
#define OPS_HD inline
#endif

namespace ganbrush {

// Must match stylegan_ops.ops.bias_act.Activation.
enum class Act : int {
  Linear = 0,
  Relu = 1,
  Lrelu = 2,
  Tanh = 3,
  Sigmoid = 4,
  Elu = 5,
  Selu = 6,
  Softplus = 7,
  Swish = 8,
};

// Must match stylegan_ops.ops.bias_act.KernelMode.
enum class Mode : int {
  Forward = 0,  // clamp(gain * f(s))
  Grad = 1,     // dy * gain * f'(s) * mask
  Grad2 = 2,    // dy * gain * f''(s) * mask
};

constexpr int kNumActs = 9;
constexpr int kNumModes = 3;

// Overloads rather than templates so that the float versions call the float C functions on
// the host and the fast single-precision intrinsics on the device.
OPS_HD float math_exp(float x) { return expf(x); }
OPS_HD double math_exp(double x) { return exp(x); }
OPS_HD float math_expm1(float x) { return expm1f(x); }
OPS_HD double math_expm1(double x) { return expm1(x); }
OPS_HD float math_log1p(float x) { return log1pf(x); }
OPS_HD double math_log1p(double x) { return log1p(x); }
OPS_HD float math_tanh(float x) { return tanhf(x); }
OPS_HD double math_tanh(double x) { return tanh(x); }

template <typename T>
OPS_HD T math_sigmoid(T x) {
  return T(1) / (T(1) + math_exp(-x));
}

// SELU constants as used by torch.nn.functional.selu.
constexpr double kSeluAlpha = 1.6732632423543772848170429916717;
constexpr double kSeluScale = 1.0507009873554804934193349852946;
// torch.nn.functional.softplus default: linear above beta * x > threshold.
constexpr double kSoftplusThreshold = 20.0;

// Primary template: one specialisation per activation. `alpha` is only used by Lrelu.
template <Act A, typename T>
struct ActMath;

template <typename T>
struct ActMath<Act::Linear, T> {
  static OPS_HD T f(T x, T) { return x; }
  static OPS_HD T d1(T, T) { return T(1); }
  static OPS_HD T d2(T, T) { return T(0); }
};

template <typename T>
struct ActMath<Act::Relu, T> {
  // Written as `x <= 0 ? 0 : x` so NaN stays NaN like torch.relu (`x > 0 ? x : 0` gives 0).
  static OPS_HD T f(T x, T) { return x <= T(0) ? T(0) : x; }
  // torch's threshold_backward zeroes the gradient where x <= 0 (and passes it for NaN).
  static OPS_HD T d1(T x, T) { return x <= T(0) ? T(0) : T(1); }
  static OPS_HD T d2(T, T) { return T(0); }
};

template <typename T>
struct ActMath<Act::Lrelu, T> {
  static OPS_HD T f(T x, T alpha) { return x > T(0) ? x : x * alpha; }
  // leaky_relu_backward uses `x > 0`, so the slope at 0 is alpha.
  static OPS_HD T d1(T x, T alpha) { return x > T(0) ? T(1) : alpha; }
  static OPS_HD T d2(T, T) { return T(0); }
};

template <typename T>
struct ActMath<Act::Tanh, T> {
  static OPS_HD T f(T x, T) { return math_tanh(x); }
  static OPS_HD T d1(T x, T) {
    T y = math_tanh(x);
    return T(1) - y * y;
  }
  static OPS_HD T d2(T x, T) {
    T y = math_tanh(x);
    return T(-2) * y * (T(1) - y * y);
  }
};

template <typename T>
struct ActMath<Act::Sigmoid, T> {
  static OPS_HD T f(T x, T) { return math_sigmoid(x); }
  static OPS_HD T d1(T x, T) {
    T y = math_sigmoid(x);
    return y * (T(1) - y);
  }
  static OPS_HD T d2(T x, T) {
    T y = math_sigmoid(x);
    return y * (T(1) - y) * (T(1) - T(2) * y);
  }
};

// ELU with alpha = 1 (F.elu's default); torch treats x == 0 as the negative branch in the
// derivatives, which is continuous there anyway. (At NaN torch's own gradient depends on
// whether its vectorised loop or the scalar tail ran; NaN here, like the vectorised loop.)
template <typename T>
struct ActMath<Act::Elu, T> {
  static OPS_HD T f(T x, T) { return x > T(0) ? x : math_expm1(x); }
  static OPS_HD T d1(T x, T) { return x > T(0) ? T(1) : math_exp(x); }
  static OPS_HD T d2(T x, T) { return x > T(0) ? T(0) : math_exp(x); }
};

template <typename T>
struct ActMath<Act::Selu, T> {
  static OPS_HD T f(T x, T) {
    return x > T(0) ? T(kSeluScale) * x : T(kSeluScale * kSeluAlpha) * math_expm1(x);
  }
  static OPS_HD T d1(T x, T) {
    return x > T(0) ? T(kSeluScale) : T(kSeluScale * kSeluAlpha) * math_exp(x);
  }
  static OPS_HD T d2(T x, T) {
    return x > T(0) ? T(0) : T(kSeluScale * kSeluAlpha) * math_exp(x);
  }
};

// softplus(x) = log(1 + e^x), linear above the threshold exactly like F.softplus. torch's
// backward uses `x > threshold` and its double backward `x < threshold`; we copy both.
template <typename T>
struct ActMath<Act::Softplus, T> {
  static OPS_HD T f(T x, T) {
    return x > T(kSoftplusThreshold) ? x : math_log1p(math_exp(x));
  }
  static OPS_HD T d1(T x, T) {
    if (x > T(kSoftplusThreshold)) return T(1);
    T z = math_exp(x);
    return z / (z + T(1));
  }
  static OPS_HD T d2(T x, T) {
    if (!(x < T(kSoftplusThreshold))) return T(0);
    T y = math_sigmoid(x);
    return y * (T(1) - y);
  }
};

// swish(x) = x * sigmoid(x).
template <typename T>
struct ActMath<Act::Swish, T> {
  static OPS_HD T f(T x, T) { return x * math_sigmoid(x); }
  static OPS_HD T d1(T x, T) {
    T y = math_sigmoid(x);
    return y * (T(1) + x * (T(1) - y));
  }
  static OPS_HD T d2(T x, T) {
    T y = math_sigmoid(x);
    return y * (T(1) - y) * (T(2) + x * (T(1) - T(2) * y));
  }
};

// Scalars that are constant across one kernel launch.
template <typename T>
struct BiasActParams {
  T alpha;
  T gain;
  T clamp;        // +inf when not clamping, so the forward clamp is a no-op
  bool no_clamp;  // clamp < 0 in the API: the gradient mask is all ones (NaN passes too)
};

template <typename T>
OPS_HD BiasActParams<T> make_bias_act_params(double alpha, double gain, double clamp) {
  return {T(alpha), T(gain), clamp < 0 ? T(INFINITY) : T(clamp), clamp < 0};
}

// The per-element computation of every mode. `s` is x + b, `dy` is ignored in Forward.
// Clamping is a runtime parameter (see BiasActParams) rather than a template one: the
// kernels are memory-bound and the halved number of instantiations halves the JIT build.
template <Act A, Mode M, typename T>
OPS_HD T bias_act_element(T s, T dy, const BiasActParams<T>& p) {
  using Math = ActMath<A, T>;
  const T y = p.gain * Math::f(s, p.alpha);
  if (M == Mode::Forward) {
    // Written with comparisons (not fmin/fmax) so NaN propagates like torch.clamp.
    return y > p.clamp ? p.clamp : (y < -p.clamp ? -p.clamp : y);
  }
  const T d = (M == Mode::Grad) ? Math::d1(s, p.alpha) : Math::d2(s, p.alpha);
  const T g = dy * p.gain * d;
  // clamp's backward passes the gradient where -clamp <= y <= clamp.
  const T ay = y < T(0) ? -y : y;
  return (p.no_clamp || ay <= p.clamp) ? g : T(0);
}

}  // namespace ganbrush
