// `strand bench ops`: GEMM rates of ops::matmul against a direct cblas_sgemm on the same buffers,
// elementwise add bandwidth, LayerNorm and cross-entropy throughput; prints one JSON line.
#include <cblas.h>
#include <omp.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "framework/autograd/grad_mode.h"
#include "framework/backend/cpu/blas_setup.h"
#include "framework/core/json.h"
#include "framework/core/tensor.h"
#include "framework/ops/elementwise.h"
#include "framework/ops/loss.h"
#include "framework/ops/matmul.h"
#include "framework/ops/norm.h"
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

// One GEMM shape: strand's matmul and cblas_sgemm on the same float32 buffers. Reps interleave,
// with the order swapped every rep, so that both see the same machine state (other load included).
std::string bench_gemm(int64_t m, int64_t k, int64_t n, int reps) {
  autograd::NoGradGuard no_grad;
  Tensor a = Tensor::randn({m, k}, 1), b = Tensor::randn({k, n}, 2);
  Tensor c = Tensor::empty({m, n});
  auto run_strand = [&] { Tensor y = ops::matmul(a, b); };
  auto run_blas = [&] {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(m), static_cast<int>(n),
                static_cast<int>(k), 1.0f, a.data<float>(), static_cast<int>(k), b.data<float>(),
                static_cast<int>(n), 0.0f, c.data<float>(), static_cast<int>(n));
  };
  run_strand();
  run_blas();
  double best_strand = 1e30, best_blas = 1e30;
  for (int r = 0; r < reps; ++r) {
    if (r % 2 == 0) best_strand = std::min(best_strand, seconds_of(run_strand));
    best_blas = std::min(best_blas, seconds_of(run_blas));
    if (r % 2 == 1) best_strand = std::min(best_strand, seconds_of(run_strand));
  }
  const double flops = 2.0 * static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k);
  const double strand_rate = flops / best_strand / 1e9, blas_rate = flops / best_blas / 1e9;
  std::ostringstream os;
  os << "{\"m\":" << m << ",\"k\":" << k << ",\"n\":" << n << ",\"strand_gflops\":" << fixed(strand_rate, 2)
     << ",\"blas_gflops\":" << fixed(blas_rate, 2) << ",\"ratio\":" << fixed(strand_rate / blas_rate, 3) << "}";
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

std::string bench_layer_norm(int reps) {
  const int64_t rows = 8192, cols = 768;
  Tensor x = Tensor::randn({rows, cols}, 5), w = Tensor::randn({cols}, 6), bias = Tensor::randn({cols}, 7);
  Tensor g = Tensor::randn({rows, cols}, 8);
  double fwd = 0;
  {
    autograd::NoGradGuard no_grad;
    fwd = best_seconds(reps, [&] { Tensor y = ops::layer_norm(x, w, bias); });
  }
  x.set_requires_grad(true);
  w.set_requires_grad(true);
  bias.set_requires_grad(true);
  const double fwd_bwd = best_seconds(reps, [&] {
    for (Tensor* t : {&x, &w, &bias}) t->zero_grad();
    ops::layer_norm(x, w, bias).backward(g);
  });
  const double bytes = 2.0 * static_cast<double>(rows * cols) * sizeof(float);  // read x, write y
  const double r = static_cast<double>(rows);
  std::ostringstream os;
  os << "{\"rows\":" << rows << ",\"cols\":" << cols << ",\"fwd_gb_per_s\":" << fixed(bytes / fwd / 1e9, 2)
     << ",\"fwd_rows_per_s\":" << fixed(r / fwd, 0) << ",\"fwd_bwd_rows_per_s\":" << fixed(r / fwd_bwd, 0) << "}";
  return os.str();
}

std::string bench_cross_entropy(int reps) {
  const int64_t tokens = 2048, vocab = 50257;
  Tensor logits = Tensor::randn({tokens, vocab}, 9);
  std::vector<double> ids(static_cast<size_t>(tokens));
  for (int64_t i = 0; i < tokens; ++i) ids[static_cast<size_t>(i)] = static_cast<double>((i * 7919) % vocab);
  Tensor targets = Tensor::from_vector(ids, {tokens}, DType::I32);
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
  const double t = static_cast<double>(tokens);
  std::ostringstream os;
  os << "{\"tokens\":" << tokens << ",\"vocab\":" << vocab << ",\"fwd_tokens_per_s\":" << fixed(t / fwd, 0)
     << ",\"fwd_bwd_tokens_per_s\":" << fixed(t / fwd_bwd, 0) << "}";
  return os.str();
}

void run_bench_ops(const BenchOpsOptions& opt) {
  if (opt.threads > 0) omp_set_num_threads(opt.threads);  // the OpenMP OpenBLAS follows it too
  std::ostringstream os;
  os << "{\"bench\":\"ops\",\"machine\":" << json_string(cpu_model())
     << ",\"blas_kernels\":" << json_string(cpu::blas_kernel_name()) << ",\"threads\":" << omp_get_max_threads()
     << ",\"reps\":" << opt.reps << ",\"gemm\":[" << bench_gemm(1024, 1024, 1024, opt.reps) << ","
     << bench_gemm(4096, 768, 3072, opt.reps) << "],\"add\":" << bench_add(opt.reps)
     << ",\"layer_norm\":" << bench_layer_norm(opt.reps) << ",\"cross_entropy\":" << bench_cross_entropy(opt.reps)
     << "}";
  std::printf("%s\n", os.str().c_str());
  std::fflush(stdout);
}

}  // namespace

void add_bench_ops(CLI::App& bench) {
  auto opt = std::make_shared<BenchOpsOptions>();
  CLI::App* cmd = bench.add_subcommand("ops", "GEMM, elementwise, LayerNorm and cross-entropy rates (JSON line)");
  cmd->add_option("--threads", opt->threads, "OpenMP (and OpenBLAS) threads; 0 keeps OMP_NUM_THREADS")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--reps", opt->reps, "timed repetitions after a warm-up; the best is reported")
      ->check(CLI::PositiveNumber);
  cmd->callback([opt] { run_bench_ops(*opt); });
}

}  // namespace strand::launch
