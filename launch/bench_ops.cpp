// `strand bench ops`: GEMM rates of ops::matmul against OpenBLAS and oneDNN called directly (and
// bf16), and the bandwidth of the GEMM-free kernels of a step (norms, GELU, AdamW, cross-entropy).
#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <functional>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "framework/autograd/grad_mode.h"
#include "framework/backend/adamw.h"
#include "framework/backend/cpu/blas_setup.h"
#include "framework/backend/cpu/gemm.h"
#include "framework/backend/cpu/onednn.h"
#include "framework/backend/cross_entropy.h"
#include "framework/backend/elementwise.h"
#include "framework/backend/gemm.h"
#include "framework/backend/norm.h"
#include "framework/core/json.h"
#include "framework/core/tensor.h"
#include "framework/ops/elementwise.h"
#include "framework/ops/loss.h"
#include "framework/ops/matmul.h"
#include "framework/ops/norm.h"
#include "framework/ops/view.h"
#include "launch/commands.h"

namespace strand::launch {
namespace {

struct BenchOpsOptions {
  int threads = 0;  // 0: leave OpenMP's default (OMP_NUM_THREADS)
  int reps = 10;
};

using Clock = std::chrono::steady_clock;

template <class Fn>
double seconds_of(Fn&& fn) {
  const auto t0 = Clock::now();
  fn();
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Shortest time of `reps` runs after one warm-up run (which fills the allocator's cache).
template <class Fn>
double best_seconds(int reps, Fn&& fn) {
  fn();
  double best = seconds_of(fn);
  for (int r = 1; r < reps; ++r) best = std::min(best, seconds_of(fn));
  return best;
}

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("model name", 0) == 0) {
      const size_t colon = line.find(':');
      return colon == std::string::npos ? line : line.substr(line.find_first_not_of(" \t", colon + 1));
    }
  return "unknown";
}

std::string fixed(double v, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

// Rate in GFLOP/s of `seconds` for an m x k x n product.
double gflops(int64_t m, int64_t k, int64_t n, double seconds) {
  return 2.0 * static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k) / seconds / 1e9;
}

// One GEMM shape, C[m, n] = A[m, k] op(B) with op(B) = B^T when b_trans (B stored [n, k], as a
// linear layer's input gradient reads its weight): strand's float32 matmul (the library its rule
// picks), OpenBLAS's cblas_sgemm, oneDNN's dnnl_sgemm and its matmul primitive on the same
// buffers, and strand's bfloat16 x bfloat16 -> float32 GEMM (backend::gemm, mixed precision's
// entry). Reps interleave, each rep in another order, so that every candidate sees the same
// machine state (other load included).
std::string bench_gemm(int64_t m, int64_t k, int64_t n, bool b_trans, int reps) {
  autograd::NoGradGuard no_grad;
  Tensor a = Tensor::randn({m, k}, 1), b = b_trans ? Tensor::randn({n, k}, 2) : Tensor::randn({k, n}, 2);
  Tensor c = Tensor::empty({m, n});
  const int64_t ldb = b_trans ? k : n;
  std::vector<uint16_t> a16(static_cast<size_t>(m * k)), b16(static_cast<size_t>(k * n));
  for (size_t i = 0; i < a16.size(); ++i) a16[i] = float_to_bf16_bits(a.data<float>()[i]);
  for (size_t i = 0; i < b16.size(); ++i) b16[i] = float_to_bf16_bits(b.data<float>()[i]);
  const bool with_onednn = cpu::onednn::available();
  auto run_strand = [&] { Tensor y = ops::matmul(a, b_trans ? ops::transpose(b, 0, 1) : b); };
  auto run_openblas = [&] {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, b_trans ? CblasTrans : CblasNoTrans, static_cast<int>(m),
                static_cast<int>(n), static_cast<int>(k), 1.0f, a.data<float>(), static_cast<int>(k), b.data<float>(),
                static_cast<int>(ldb), 0.0f, c.data<float>(), static_cast<int>(n));
  };
  auto run_onednn = [&] {
    cpu::onednn::sgemm(false, b_trans, m, n, k, a.data<float>(), k, b.data<float>(), ldb, false, c.data<float>(), n);
  };
  auto run_onednn_matmul = [&] {
    cpu::onednn::matmul_f32(false, b_trans, m, n, k, a.data<float>(), k, b.data<float>(), ldb, false,
                            c.data<float>(), n);
  };
  auto run_bf16 = [&] {
    backend::GemmParams p;
    p.dtype = DType::BF16;
    p.c_dtype = DType::F32;
    p.m = m, p.n = n, p.k = k;
    p.a = {a16.data(), k, false};
    p.b = {b16.data(), ldb, b_trans};
    p.c = c.data<float>();
    p.ldc = n;
    backend::gemm(p);
  };
  std::vector<std::function<void()>> runs = {run_strand, run_openblas, run_bf16};
  if (with_onednn) {
    runs.push_back(run_onednn);
    runs.push_back(run_onednn_matmul);
  }
  std::vector<double> best(runs.size(), 1e30);
  for (auto& run : runs) run();  // warm-up: allocator, JIT kernels, cached primitives
  for (int r = 0; r < reps; ++r)
    for (size_t i = 0; i < runs.size(); ++i) {
      const size_t j = (i + static_cast<size_t>(r)) % runs.size();
      best[j] = std::min(best[j], seconds_of(runs[j]));
    }
  const double strand_rate = gflops(m, k, n, best[0]), openblas_rate = gflops(m, k, n, best[1]);
  const double bf16_rate = gflops(m, k, n, best[2]);
  const double onednn_rate = with_onednn ? gflops(m, k, n, best[3]) : 0.0;
  const double matmul_rate = with_onednn ? gflops(m, k, n, best[4]) : 0.0;
  std::ostringstream os;
  os << "{\"m\":" << m << ",\"k\":" << k << ",\"n\":" << n << ",\"b_transposed\":" << (b_trans ? "true" : "false")
     << ",\"strand_library\":" << json_string(cpu::gemm_library_name(cpu::gemm_library(m, n, k, b_trans)))
     << ",\"strand_gflops\":" << fixed(strand_rate, 2) << ",\"openblas_gflops\":" << fixed(openblas_rate, 2);
  if (with_onednn)
    os << ",\"onednn_gflops\":" << fixed(onednn_rate, 2) << ",\"onednn_matmul_gflops\":" << fixed(matmul_rate, 2);
  os << ",\"strand_vs_faster\":" << fixed(strand_rate / std::max({openblas_rate, onednn_rate, matmul_rate}), 3)
     << ",\"bf16_gflops\":" << fixed(bf16_rate, 2) << ",\"bf16_vs_strand_fp32\":" << fixed(bf16_rate / strand_rate, 3)
     << "}";
  return os.str();
}

// Small square products (A @ B^T, as a linear layer's forward), where call overhead decides: the
// microseconds per product of each library, and the one strand's rule picks for the shape.
std::string bench_gemm_small(int reps) {
  std::ostringstream os;
  os << "[";
  for (int64_t s : {16, 32, 48, 64, 96, 128}) {
    std::vector<float> a(static_cast<size_t>(s * s), 0.5f), b(a.size(), 0.25f), c(a.size());
    const int iters = static_cast<int>(std::max<int64_t>(20, 4000000 / (s * s * s)));
    auto repeat = [&](auto&& one) {
      return [&, one] {
        for (int i = 0; i < iters; ++i) one();
      };
    };
    auto openblas = repeat([&] {
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(s), static_cast<int>(s),
                  static_cast<int>(s), 1.0f, a.data(), static_cast<int>(s), b.data(), static_cast<int>(s), 0.0f,
                  c.data(), static_cast<int>(s));
    });
    auto onednn = repeat([&] { cpu::onednn::sgemm(false, true, s, s, s, a.data(), s, b.data(), s, false, c.data(), s); });
    double best_openblas = 1e30, best_onednn = 1e30;
    openblas();
    if (cpu::onednn::available()) onednn();
    for (int r = 0; r < reps; ++r) {
      best_openblas = std::min(best_openblas, seconds_of(openblas));
      if (cpu::onednn::available()) best_onednn = std::min(best_onednn, seconds_of(onednn));
    }
    os << (s == 16 ? "" : ",") << "{\"size\":" << s << ",\"strand_library\":"
       << json_string(cpu::gemm_library_name(cpu::gemm_library(s, s, s))) << ",\"openblas_us\":"
       << fixed(best_openblas / iters * 1e6, 2);
    if (cpu::onednn::available()) os << ",\"onednn_us\":" << fixed(best_onednn / iters * 1e6, 2);
    os << "}";
  }
  os << "]";
  return os.str();
}

std::string bench_add(int reps) {
  autograd::NoGradGuard no_grad;
  const int64_t n = int64_t{1} << 24;
  Tensor a = Tensor::randn({n}, 3), b = Tensor::randn({n}, 4);
  const double t = best_seconds(reps, [&] { Tensor y = ops::add(a, b); });
  const double bytes = 3.0 * static_cast<double>(n) * sizeof(float);  // two reads, one write
  return "{\"n\":" + std::to_string(n) + ",\"gb_per_s\":" + fixed(bytes / t / 1e9, 2) + "}";
}

double gb_per_s(double bytes, double seconds) { return bytes / seconds / 1e9; }

// LayerNorm over [8192, 768]: the kernels alone in GB/s (forward reads x and writes y; the
// backward reads x and g and writes dx, the [768] parameter gradients aside), and the op
// through autograd in rows/s.
std::string bench_layer_norm(int reps) {
  const int64_t rows = 8192, cols = 768;
  Tensor x = Tensor::randn({rows, cols}, 5), w = Tensor::randn({cols}, 6), bias = Tensor::randn({cols}, 7);
  Tensor g = Tensor::randn({rows, cols}, 8);
  Tensor y = Tensor::empty({rows, cols}), dx = Tensor::empty({rows, cols});
  Tensor mean = Tensor::empty({rows}), rstd = Tensor::empty({rows}), dw = Tensor::empty({cols}), db = Tensor::empty({cols});
  backend::NormParams f;
  f.rows = rows, f.n = cols, f.x = x.raw_data(), f.weight = w.raw_data(), f.bias = bias.raw_data(), f.eps = 1e-5;
  f.y = y.raw_data(), f.mean = mean.raw_data(), f.rstd = rstd.raw_data();
  const double kernel_fwd = best_seconds(reps, [&] { backend::norm_rows(f); });
  backend::NormParams bw = f;
  bw.op = backend::NormOp::Backward;
  bw.g = g.raw_data(), bw.dx = dx.raw_data(), bw.dweight = dw.raw_data(), bw.dbias = db.raw_data();
  const double kernel_bwd = best_seconds(reps, [&] { backend::norm_rows(bw); });
  double fwd = 0;
  {
    autograd::NoGradGuard no_grad;
    fwd = best_seconds(reps, [&] { Tensor out = ops::layer_norm(x, w, bias); });
  }
  x.set_requires_grad(true);
  w.set_requires_grad(true);
  bias.set_requires_grad(true);
  const double fwd_bwd = best_seconds(reps, [&] {
    for (Tensor* t : {&x, &w, &bias}) t->zero_grad();
    ops::layer_norm(x, w, bias).backward(g);
  });
  const double elems = static_cast<double>(rows * cols) * sizeof(float), r = static_cast<double>(rows);
  std::ostringstream os;
  os << "{\"rows\":" << rows << ",\"cols\":" << cols << ",\"fwd_gb_per_s\":" << fixed(gb_per_s(2 * elems, kernel_fwd), 2)
     << ",\"bwd_gb_per_s\":" << fixed(gb_per_s(3 * elems, kernel_bwd), 2)
     << ",\"bwd_over_fwd_time\":" << fixed(kernel_bwd / kernel_fwd, 2) << ",\"fwd_rows_per_s\":" << fixed(r / fwd, 0)
     << ",\"fwd_bwd_rows_per_s\":" << fixed(r / fwd_bwd, 0) << "}";
  return os.str();
}

// GELU (tanh form) over 2^24 values: the forward map (read x, write y) and its gradient
// (read g and x, write dx).
std::string bench_gelu(int reps) {
  const int64_t n = int64_t{1} << 24;
  Tensor x = Tensor::randn({n}, 10), g = Tensor::randn({n}, 11), y = Tensor::empty({n});
  backend::MapParams f;
  f.unary = backend::Unary::Gelu, f.shape = {n}, f.out = y.raw_data(), f.x = x.raw_data(), f.x_strides = {1};
  const double fwd = best_seconds(reps, [&] { backend::elementwise_map(f); });
  backend::ActivationGradParams b;
  b.n = n, b.out = y.raw_data(), b.g = g.raw_data(), b.x = x.raw_data();
  const double bwd = best_seconds(reps, [&] { backend::activation_grad(b); });
  const double bytes = static_cast<double>(n) * sizeof(float);
  return "{\"n\":" + std::to_string(n) + ",\"fwd_gb_per_s\":" + fixed(gb_per_s(2 * bytes, fwd), 2) +
         ",\"bwd_gb_per_s\":" + fixed(gb_per_s(3 * bytes, bwd), 2) + "}";
}

// One AdamW step over 2^24 parameters: reads param, grad, m, v and writes param, m, v.
std::string bench_adamw(int reps) {
  const int64_t n = int64_t{1} << 24;
  Tensor param = Tensor::randn({n}, 12), grad = Tensor::randn({n}, 13), m = Tensor::zeros({n}), v = Tensor::zeros({n});
  backend::AdamWParams p;
  p.n = n, p.lr = 1e-4, p.weight_decay = 0.1, p.bias_correction1 = 0.1, p.bias_correction2 = 0.001;
  p.param = param.raw_data(), p.grad = grad.raw_data(), p.m = m.raw_data(), p.v = v.raw_data();
  const double t = best_seconds(reps, [&] { backend::adamw_update(p); });
  return "{\"n\":" + std::to_string(n) + ",\"gb_per_s\":" +
         fixed(gb_per_s(7.0 * static_cast<double>(n) * sizeof(float), t), 2) + "}";
}

// Cross-entropy over GPT-2's vocabulary: the kernels in GB/s (the forward reads the logits once,
// the backward reads them and writes their gradient) and the op through autograd in tokens/s.
std::string bench_cross_entropy(int reps) {
  const int64_t tokens = 2048, vocab = 50257;
  Tensor logits = Tensor::randn({tokens, vocab}, 9);
  std::vector<double> ids(static_cast<size_t>(tokens));
  for (int64_t i = 0; i < tokens; ++i) ids[static_cast<size_t>(i)] = static_cast<double>((i * 7919) % vocab);
  Tensor targets = Tensor::from_vector(ids, {tokens}, DType::I32);
  Tensor lse = Tensor::empty({tokens}), dlogits = Tensor::empty({tokens, vocab});
  std::vector<double> row_loss(static_cast<size_t>(tokens));
  backend::CrossEntropyParams f;
  f.logits = logits.raw_data(), f.ld = vocab, f.N = tokens, f.V = vocab, f.targets = targets.data<int32_t>();
  f.lse = lse.raw_data(), f.row_loss = row_loss.data();
  const double kernel_fwd = best_seconds(reps, [&] { backend::cross_entropy(f); });
  backend::CrossEntropyParams b = f;
  b.op = backend::CrossEntropyOp::Backward, b.scale = 1.0 / static_cast<double>(tokens), b.dlogits = dlogits.raw_data();
  const double kernel_bwd = best_seconds(reps, [&] { backend::cross_entropy(b); });
  double fwd = 0;
  {
    autograd::NoGradGuard no_grad;
    fwd = best_seconds(reps, [&] { Tensor loss = ops::cross_entropy(logits, targets); });
  }
  logits.set_requires_grad(true);
  const double fwd_bwd = best_seconds(reps, [&] {
    logits.zero_grad();
    ops::cross_entropy(logits, targets).backward();
  });
  const double t = static_cast<double>(tokens), bytes = t * static_cast<double>(vocab) * sizeof(float);
  std::ostringstream os;
  os << "{\"tokens\":" << tokens << ",\"vocab\":" << vocab << ",\"fwd_gb_per_s\":" << fixed(gb_per_s(bytes, kernel_fwd), 2)
     << ",\"bwd_gb_per_s\":" << fixed(gb_per_s(2 * bytes, kernel_bwd), 2) << ",\"fwd_tokens_per_s\":" << fixed(t / fwd, 0)
     << ",\"fwd_bwd_tokens_per_s\":" << fixed(t / fwd_bwd, 0) << "}";
  return os.str();
}

void run_bench_ops(const BenchOpsOptions& opt) {
  if (opt.threads > 0) omp_set_num_threads(opt.threads);  // the OpenMP OpenBLAS follows it too
  std::ostringstream os;
  os << "{\"bench\":\"ops\",\"machine\":" << json_string(cpu_model()) << ",\"threads\":" << omp_get_max_threads()
     << ",\"reps\":" << opt.reps << ",\"openblas\":{\"kernels\":" << json_string(cpu::blas_kernel_name())
     << ",\"config\":" << json_string(cpu::blas_config()) << "},\"onednn\":{\"version\":"
     << json_string(cpu::onednn::version()) << ",\"isa\":" << json_string(cpu::onednn::isa())
     << "},\"gemm\":[" << bench_gemm(1024, 1024, 1024, false, opt.reps) << ","
     << bench_gemm(4096, 768, 3072, false, opt.reps) << "," << bench_gemm(1024, 3072, 768, true, opt.reps)
     << "],\"gemm_small\":" << bench_gemm_small(opt.reps) << ",\"add\":" << bench_add(opt.reps) << ",\"layer_norm\":" << bench_layer_norm(opt.reps)
     << ",\"gelu\":" << bench_gelu(opt.reps) << ",\"adamw\":" << bench_adamw(opt.reps)
     << ",\"cross_entropy\":" << bench_cross_entropy(opt.reps) << "}";
  std::printf("%s\n", os.str().c_str());
  std::fflush(stdout);
}

}  // namespace

void add_bench_ops(CLI::App& bench) {
  auto opt = std::make_shared<BenchOpsOptions>();
  CLI::App* cmd = bench.add_subcommand("ops", "GEMM rates per library (fp32, bf16) and GEMM-free kernel bandwidth (JSON line)");
  cmd->add_option("--threads", opt->threads, "OpenMP (and OpenBLAS) threads; 0 keeps OMP_NUM_THREADS")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--reps", opt->reps, "timed repetitions after a warm-up; the best is reported")
      ->check(CLI::PositiveNumber);
  cmd->callback([opt] { run_bench_ops(*opt); });
}

}  // namespace strand::launch
