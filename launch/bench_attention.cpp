// `strand bench attention`: the tiled attention forward and backward timed at one shape and mask,
// useful GFLOP/s over the unmasked pairs only, peak bytes; --check adds the largest absolute errors
// of o, lse, dq, dk, dv against the materialised float64 reference; --tiles adds the rates of
// one tile product by the kernels' micro-kernel and by cblas_sgemm; --dtype bf16 --vs-f32 times
// float32 on the same values in the same run and reports the speedup. With --sp P under
// `mpirun -np P`, ring attention over the world (--layout auto|contiguous|zigzag; auto picks what
// training picks: zigzag for a causal mask, else contiguous) against the same
// blocks computed with no message (RingOptions::compute_only). Prints one JSON line.
#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <memory>
#include <sstream>
#include <span>
#include <string>
#include <vector>

#include "framework/autograd/engine.h"
#include "framework/autograd/grad_mode.h"
#include "framework/ops/attention_contract.h"
#include "framework/backend/cpu/attention_bf16.h"
#include "framework/backend/cpu/attention_int8.h"
#include "framework/backend/cpu/attention_tile.h"
#include "framework/core/allocator.h"
#include "framework/core/error.h"
#include "framework/ops/attention.h"
#include "framework/ops/attention_reference.h"
#include "launch/commands.h"
#include "parallel/comm/group.h"
#include "parallel/layout.h"
#include "parallel/ring.h"

namespace strand::launch {
namespace {

struct BenchAttentionOptions {
  int64_t seq = 4096;
  int64_t heads = 8;
  int64_t kv_heads = 0;  // 0: same as heads
  int64_t head_dim = 64;
  int64_t batch = 1;
  bool causal = false;
  int64_t window = -1;       // -1: not given
  int64_t window_right = 0;  // symmetric (encoder) windows
  std::string pattern;       // empty: from --causal / --window, else full
  int64_t dilation = 2;
  int64_t globals = 0;       // Longformer / BigBird: the first `globals` positions are global tokens
  int64_t block_size = 64;
  int64_t random_blocks = 3;
  std::string dtype = "f32";
  int threads = 0;
  int reps = 3;
  bool check = false;
  bool tiles = false;
  bool vs_f32 = false;  // --dtype bf16: also time float32 on the same values, alternating
  int sp = 1;                       // sequence-parallel ranks: the world size under mpirun
  std::string layout = "auto";  // sp > 1: contiguous or zigzag; auto: zigzag when causal, as training
};

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

double process_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

std::string num(double v, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

std::string sci(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.3e", v);
  return buf;
}

MaskSpec mask_of(const BenchAttentionOptions& opt) {
  MaskSpec m;
  if (!opt.pattern.empty()) {
    m = mask_from_pattern_name(opt.pattern);
    if (opt.causal) m.causal = true;  // --causal with a pattern: its causal form (no key after the query)
  } else if (opt.causal) {
    m.causal = true;
  } else if (opt.window >= 0) {
    m.kind = MaskKind::Sliding;
  }
  const bool windowed = m.kind == MaskKind::Sliding || m.kind == MaskKind::Dilated ||
                        m.kind == MaskKind::Longformer || m.kind == MaskKind::BigBird;
  STRAND_CHECK(windowed || opt.window < 0, ValueError, "bench attention: --window ", opt.window,
               " does not apply to pattern ", mask_pattern_name(m));
  if (windowed) {
    m.window_left = opt.window >= 0 ? opt.window : 256;
    m.window_right = opt.window_right;
  }
  m.dilation = opt.dilation;
  for (int64_t g = 0; g < opt.globals; ++g) m.global_tokens.push_back(g);
  m.block_size = opt.block_size;
  m.random_blocks = opt.random_blocks;
  m.seed = 1234;
  return m;
}

double max_abs_error(const Tensor& a, const Tensor& b) {
  const auto x = a.to_vector(), y = b.to_vector();
  double m = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    if (std::isinf(x[i]) && x[i] == y[i]) continue;  // both -inf: an empty row on both sides
    m = std::max(m, std::abs(x[i] - y[i]));
  }
  return m;
}

// Errors of o, lse, dq, dk, dv against attention_reference run in float64 on the same inputs.
std::string check_errors(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& go, const MaskSpec& mask,
                         const ops::AttentionOutput& out, const std::vector<Tensor>& grads) {
  auto f64 = [](const Tensor& t) {
    Tensor c = t.copy_as(DType::F64, Device::cpu());
    c.set_requires_grad(true);
    return c;
  };
  Tensor q64 = f64(q), k64 = f64(k), v64 = f64(v);
  const Tensor dense = ops::dense_mask(mask, q.shape()[0], q.shape()[2], k.shape()[2]);
  ops::AttentionOutput ref = ops::attention_reference(q64, k64, v64, dense);
  std::vector<Tensor> g = autograd::grad({ref.o}, {go.copy_as(DType::F64, Device::cpu())}, {q64, k64, v64});
  std::ostringstream os;
  os << ",\"err_o\":" << sci(max_abs_error(out.o, ref.o)) << ",\"err_lse\":" << sci(max_abs_error(out.lse, ref.lse))
     << ",\"err_dq\":" << sci(max_abs_error(grads[0], g[0])) << ",\"err_dk\":" << sci(max_abs_error(grads[1], g[1]))
     << ",\"err_dv\":" << sci(max_abs_error(grads[2], g[2]));
  return os.str();
}

// GFLOP/s of the two tile products of the forward (S^T = K Qt and acc += (P^T)^T V, 64 x 64 x D)
// by the attention micro-kernel and by cblas_sgemm on the same buffers, one thread, best of many.
std::string tile_rates(int64_t d) {
  const int64_t t = 64;
  std::vector<float> k(static_cast<size_t>(t * d)), qt(static_cast<size_t>(d * t)), s(static_cast<size_t>(t * t)),
      v(static_cast<size_t>(t * d)), acc(static_cast<size_t>(t * d));
  for (auto* x : {&k, &qt, &s, &v, &acc})
    for (size_t i = 0; i < x->size(); ++i) (*x)[i] = 0.01f * static_cast<float>(i % 13);
  auto rate = [&](auto&& fn) {
    double best = 1e30;
    for (int r = 0; r < 100; ++r) {
      const auto t0 = Clock::now();
      for (int i = 0; i < 20; ++i) fn();
      best = std::min(best, seconds_since(t0) / 20);
    }
    return 2.0 * static_cast<double>(t * t * d) / best / 1e9;
  };
  const int n = static_cast<int>(t), dd = static_cast<int>(d);
  const double mk_s = rate([&] { cpu::attention_tile::gemm<float>(t, t, d, k.data(), d, 1, qt.data(), t, s.data(), t, false); });
  const double blas_s = rate([&] {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, dd, 1.0f, k.data(), dd, qt.data(), n, 0.0f, s.data(), n);
  });
  const double mk_o = rate([&] { cpu::attention_tile::gemm<float>(t, d, t, s.data(), 1, t, v.data(), d, acc.data(), d, true); });
  const double blas_o = rate([&] {
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n, dd, n, 1.0f, s.data(), n, v.data(), dd, 1.0f, acc.data(), dd);
  });
  return ",\"tiles\":{\"scores_microkernel_gflops\":" + num(mk_s, 1) + ",\"scores_blas_gflops\":" + num(blas_s, 1) +
         ",\"pv_microkernel_gflops\":" + num(mk_o, 1) + ",\"pv_blas_gflops\":" + num(blas_o, 1) + "}";
}

double median(std::vector<double> xs) {
  std::sort(xs.begin(), xs.end());
  const size_t m = xs.size() / 2;
  return xs.size() % 2 ? xs[m] : 0.5 * (xs[m - 1] + xs[m]);
}

// --sp P > 1: ring attention forward + backward over the world group, and the same blocks with
// RingOptions::compute_only (own K/V for every block, no message), alternating, after one warm-up
// of each. Reported: ring_ms and compute_only_ms, the median over repetitions of the slowest
// rank's fwd + bwd (a ring step waits for the slowest rank, so that is the pace compute alone
// would set), their ratio, and per rank the medians of its own times and their ratio, with the
// largest of those (ratio_per_rank_max, which also picks up noise in one rank's compute-only run).
void run_bench_ring(const BenchAttentionOptions& opt, const MaskSpec& mask, DType dt, int64_t hkv) {
  parallel::Group& world = parallel::world();
  STRAND_CHECK(opt.layout == "auto" || opt.layout == "contiguous" || opt.layout == "zigzag", ValueError,
               "bench attention: --layout ", opt.layout, " (expected auto, contiguous or zigzag)");
  // auto: the layout training resolves for a causal model (parallel.layout auto, ring).
  const std::string layout_name = opt.layout != "auto" ? opt.layout : mask.causal ? "zigzag" : "contiguous";
  STRAND_CHECK(!opt.check, ValueError, "bench attention: --check runs the materialised reference of the whole "
               "sequence on one rank; use it with --sp 1");
  const parallel::LayoutKind kind =
      layout_name == "zigzag" ? parallel::LayoutKind::Zigzag : parallel::LayoutKind::Contiguous;
  const parallel::SequenceLayout layout = parallel::SequenceLayout::make(kind, opt.seq, opt.sp);
  const int64_t b = opt.batch, d = opt.head_dim, rows = layout.local_len();
  // Every rank draws the same global tensors and keeps its rows.
  Tensor q = layout.shard(Tensor::randn({b, opt.heads, opt.seq, d}, 1), world.rank(), 2).copy_as(dt, Device::cpu());
  Tensor k = layout.shard(Tensor::randn({b, hkv, opt.seq, d}, 2), world.rank(), 2).copy_as(dt, Device::cpu());
  Tensor v = layout.shard(Tensor::randn({b, hkv, opt.seq, d}, 3), world.rank(), 2).copy_as(dt, Device::cpu());
  const Tensor go = Tensor::ones({b, opt.heads, rows, d}, dt);
  for (Tensor* t : {&q, &k, &v}) t->set_requires_grad(true);

  int64_t peak = 0;
  // One timed forward + backward; the barrier lines the ranks up so no rank's wait is counted.
  auto run_once = [&](bool compute_only, double& f, double& g) {
    for (Tensor* t : {&q, &k, &v}) t->zero_grad();
    world.barrier();
    memory::reset_peak(Device::cpu());
    auto t0 = Clock::now();
    const parallel::RingOptions options{.compute_only = compute_only};
    ops::AttentionOutput out = parallel::ring_attention(q, k, v, mask, 0.0, world, layout, options);
    f = seconds_since(t0);
    t0 = Clock::now();
    out.o.backward(go);
    g = seconds_since(t0);
    if (!compute_only) peak = std::max(peak, memory::stats(Device::cpu()).peak_bytes);
  };
  double f, g;
  run_once(false, f, g);  // warm-up: the allocator cache and the first messages
  run_once(true, f, g);
  std::vector<double> ring_f, ring_g, only_f, only_g, ring_slowest, only_slowest;
  auto slowest_of = [&](double t) {
    world.all_reduce(std::span<double>(&t, 1), parallel::ReduceOp::Max);
    return t;
  };
  for (int rep = 0; rep < opt.reps; ++rep) {
    run_once(false, f, g);
    ring_f.push_back(f);
    ring_g.push_back(g);
    ring_slowest.push_back(slowest_of(f + g));
    run_once(true, f, g);
    only_f.push_back(f);
    only_g.push_back(g);
    only_slowest.push_back(slowest_of(f + g));
  }
  // This rank's medians, then every rank's (for the per-rank ratios) and the slowest.
  std::vector<double> mine = {median(ring_f), median(ring_g), median(only_f), median(only_g)};
  // Per rank: ring ms, compute-only ms, their ratio.
  const Tensor own = Tensor::from_vector({(mine[0] + mine[1]) * 1e3, (mine[2] + mine[3]) * 1e3,
                                          (mine[0] + mine[1]) / (mine[2] + mine[3])},
                                         {3}, DType::F64);
  Tensor gathered = Tensor::empty({3 * world.size()}, DType::F64);
  world.all_gather(own, gathered);
  std::vector<double> slowest = mine;
  world.all_reduce(std::span<double>(slowest), parallel::ReduceOp::Max);
  std::vector<int64_t> peak_max = {peak};
  world.all_reduce(std::span<int64_t>(peak_max), parallel::ReduceOp::Max);
  if (world.rank() != 0) return;

  const std::vector<double> per_rank = gathered.to_vector();
  auto list = [&](int field, int digits) {
    std::string out = "[";
    for (int r = 0; r < world.size(); ++r)
      out += (r ? "," : "") + num(per_rank[static_cast<size_t>(3 * r + field)], digits);
    return out + "]";
  };
  double worst = 0;
  for (int r = 0; r < world.size(); ++r) worst = std::max(worst, per_rank[static_cast<size_t>(3 * r + 2)]);
  const int64_t pairs = ops::attended_pairs(mask, b, opt.seq, opt.seq);
  const double useful = 4.0 * static_cast<double>(pairs) * static_cast<double>(opt.heads) * static_cast<double>(d);
  const double ring_s = median(ring_slowest), only_s = median(only_slowest);
  std::ostringstream os;
  os << "{\"bench\":\"attention\",\"impl\":\"strand-cpu-ring\",\"sp\":" << opt.sp << ",\"layout\":\"" << layout_name
     << "\",\"seq\":" << opt.seq << ",\"rows_per_rank\":" << rows << ",\"heads\":" << opt.heads
     << ",\"kv_heads\":" << hkv << ",\"head_dim\":" << d << ",\"batch\":" << b << ",\"pattern\":\""
     << mask_pattern_name(mask) << "\"";
  if (mask.kind != MaskKind::None)
    os << ",\"window\":" << mask.window_left << ",\"window_right\":" << mask.window_right;
  os << ",\"dtype\":\"" << opt.dtype << "\",\"threads\":" << omp_get_max_threads() << ",\"reps\":" << opt.reps
     << ",\"ring_steps\":" << parallel::ring_steps(mask, layout, b)
     << ",\"ring_fwd_ms\":" << num(slowest[0] * 1e3, 2) << ",\"ring_bwd_ms\":" << num(slowest[1] * 1e3, 2)
     << ",\"ring_ms\":" << num(ring_s * 1e3, 2) << ",\"compute_only_fwd_ms\":" << num(slowest[2] * 1e3, 2)
     << ",\"compute_only_bwd_ms\":" << num(slowest[3] * 1e3, 2) << ",\"compute_only_ms\":" << num(only_s * 1e3, 2)
     << ",\"ring_ms_per_rank\":" << list(0, 2) << ",\"compute_only_ms_per_rank\":" << list(1, 2)
     << ",\"ratio\":" << num(ring_s / only_s, 3) << ",\"ratio_per_rank\":" << list(2, 3)
     << ",\"ratio_per_rank_max\":" << num(worst, 3)
     << ",\"fwd_bwd_gflops_per_rank\":" << num(3.5 * useful / opt.sp / ring_s / 1e9, 2)
     << ",\"peak_bytes\":" << peak_max[0] << "}";
  std::printf("%s\n", os.str().c_str());
  std::fflush(stdout);
}

// --dtype int8: the inference forward with INT8 scores beside the float32 kernel on the same
// inputs, in one run (forward only: int8 attention has no backward), with both results' errors
// against the float64 reference when --check is given.
void run_bench_int8(const BenchAttentionOptions& opt, const MaskSpec& mask, int64_t hkv) {
  STRAND_CHECK(opt.sp == 1, ValueError, "bench attention: --dtype int8 runs on one rank (--sp 1)");
  const int64_t b = opt.batch, n = opt.seq, d = opt.head_dim;
  const Tensor q = Tensor::randn({b, opt.heads, n, d}, 1), k = Tensor::randn({b, hkv, n, d}, 2),
               v = Tensor::randn({b, hkv, n, d}, 3);
  autograd::NoGradGuard no_grad;
  const auto best_of = [&](bool int8, ops::AttentionOutput& out) {
    double best = 1e30;
    for (int rep = 0; rep <= opt.reps; ++rep) {  // rep 0 warms the allocator cache up
      ops::Int8AttentionScope scope(int8);
      const auto t0 = Clock::now();
      out = ops::attention(q, k, v, mask);
      if (rep > 0) best = std::min(best, seconds_since(t0));
    }
    return best;
  };
  ops::AttentionOutput f32_out, int8_out;
  const double f32_s = best_of(false, f32_out), int8_s = best_of(true, int8_out);
  const int64_t pairs = ops::attended_pairs(mask, b, n, n);
  const double useful = 4.0 * static_cast<double>(pairs) * static_cast<double>(opt.heads) * static_cast<double>(d);
  std::ostringstream os;
  os << "{\"bench\":\"attention\",\"impl\":\"strand-cpu-int8\",\"seq\":" << n << ",\"heads\":" << opt.heads
     << ",\"kv_heads\":" << hkv << ",\"head_dim\":" << d << ",\"batch\":" << b << ",\"pattern\":\""
     << mask_pattern_name(mask) << "\",\"causal\":" << (mask.causal ? "true" : "false")
     << ",\"dtype\":\"int8\",\"vnni\":" << (cpu::cpu_has_vnni() ? "true" : "false")
     << ",\"threads\":" << omp_get_max_threads() << ",\"fwd_ms\":" << num(int8_s * 1e3, 2)
     << ",\"f32_fwd_ms\":" << num(f32_s * 1e3, 2) << ",\"speedup\":" << num(f32_s / int8_s, 3)
     << ",\"fwd_gflops\":" << num(useful / int8_s / 1e9, 2);
  if (opt.check) {
    auto f64 = [](const Tensor& t) { return t.copy_as(DType::F64, Device::cpu()); };
    const ops::AttentionOutput ref = ops::attention_reference(f64(q), f64(k), f64(v), ops::dense_mask(mask, b, n, n));
    os << ",\"o_max_err\":" << sci(max_abs_error(int8_out.o, ref.o)) << ",\"lse_max_err\":"
       << sci(max_abs_error(int8_out.lse, ref.lse)) << ",\"f32_o_max_err\":" << sci(max_abs_error(f32_out.o, ref.o))
       << ",\"f32_lse_max_err\":" << sci(max_abs_error(f32_out.lse, ref.lse));
  }
  os << "}";
  std::printf("%s\n", os.str().c_str());
  std::fflush(stdout);
}

void run_bench_attention(const BenchAttentionOptions& opt) {
  if (opt.threads > 0) omp_set_num_threads(opt.threads);
  const int64_t hkv = opt.kv_heads > 0 ? opt.kv_heads : opt.heads;
  STRAND_CHECK(opt.dtype == "f32" || opt.dtype == "bf16" || opt.dtype == "int8", ValueError,
               "bench attention: --dtype ", opt.dtype, " (expected f32, bf16 or int8)");
  const DType dt = opt.dtype == "bf16" ? DType::BF16 : DType::F32;
  const MaskSpec mask = mask_of(opt);
  if (opt.dtype == "int8") return run_bench_int8(opt, mask, hkv);
  const int ranks = parallel::world().size();
  STRAND_CHECK(opt.sp == ranks, ValueError, "bench attention: --sp ", opt.sp, " must equal the number of ranks, ",
               ranks, " (run `mpirun -np P strand bench attention --sp P ...`)");
  if (opt.sp > 1) return run_bench_ring(opt, mask, dt, hkv);
  const int64_t b = opt.batch, n = opt.seq, d = opt.head_dim;
  // The same draws in both dtypes: the bf16 inputs are the float32 ones rounded.
  const Tensor q32 = Tensor::randn({b, opt.heads, n, d}, 1), k32 = Tensor::randn({b, hkv, n, d}, 2),
               v32 = Tensor::randn({b, hkv, n, d}, 3);
  Tensor q = q32.copy_as(dt, Device::cpu()), k = k32.copy_as(dt, Device::cpu()), v = v32.copy_as(dt, Device::cpu());
  Tensor go = Tensor::ones({b, opt.heads, n, d}, dt);  // what the peer back-propagates
  for (Tensor* t : {&q, &k, &v}) t->set_requires_grad(true);
  const bool vs_f32 = opt.vs_f32 && dt == DType::BF16;
  Tensor qf = q32.detach(), kf = k32.detach(), vf = v32.detach(), gof = Tensor::ones({b, opt.heads, n, d});
  for (Tensor* t : {&qf, &kf, &vf}) t->set_requires_grad(true);

  // Peak bytes of one forward + backward: inputs, outputs, saved tensors, scratch and gradients.
  // Wall time, and the process's CPU time (with one thread, what the kernels cost whatever else
  // runs on the machine; with more, OpenMP's spinning counts too).
  double fwd = 1e30, bwd = 1e30, fwd32 = 1e30, bwd32 = 1e30, cpu = 1e30, cpu32 = 1e30, cpu_f = 1e30, cpu_f32 = 1e30;
  int64_t peak = 0;
  ops::AttentionOutput out;
  auto once = [&](Tensor& tq, Tensor& tk, Tensor& tv, const Tensor& tgo, double& f, double& g, double& cf, double& c) {
    for (Tensor* t : {&tq, &tk, &tv}) t->zero_grad();
    out = ops::AttentionOutput{};
    memory::reset_peak(Device::cpu());
    const double c0 = process_cpu_seconds();
    auto t0 = Clock::now();
    out = ops::attention(tq, tk, tv, mask);
    f = seconds_since(t0);
    cf = process_cpu_seconds() - c0;
    t0 = Clock::now();
    out.o.backward(tgo);
    g = seconds_since(t0);
    c = process_cpu_seconds() - c0;
  };
  for (int rep = 0; rep <= opt.reps; ++rep) {  // rep 0 warms the allocator cache up
    double f, g, cf, c;
    if (vs_f32) {  // float32 first, alternating, so both see the same load on a shared machine
      once(qf, kf, vf, gof, f, g, cf, c);
      if (rep > 0) {
        fwd32 = std::min(fwd32, f), bwd32 = std::min(bwd32, g);
        cpu_f32 = std::min(cpu_f32, cf), cpu32 = std::min(cpu32, c);
      }
    }
    once(q, k, v, go, f, g, cf, c);
    peak = std::max(peak, memory::stats(Device::cpu()).peak_bytes);
    if (rep > 0) {
      fwd = std::min(fwd, f);
      bwd = std::min(bwd, g);
      cpu = std::min(cpu, c);
      cpu_f = std::min(cpu_f, cf);
    }
  }

  const int64_t pairs = ops::attended_pairs(mask, b, n, n);  // summed over batch rows, per head
  const double useful = 4.0 * static_cast<double>(pairs) * static_cast<double>(opt.heads) * static_cast<double>(d);
  std::ostringstream os;
  os << "{\"bench\":\"attention\",\"impl\":\"strand-cpu-tiled\",\"seq\":" << n << ",\"heads\":" << opt.heads
     << ",\"kv_heads\":" << hkv << ",\"head_dim\":" << d << ",\"batch\":" << b << ",\"pattern\":\""
     << mask_pattern_name(mask) << "\"";
  if (mask.kind != MaskKind::None)
    os << ",\"window\":" << mask.window_left << ",\"window_right\":" << mask.window_right
       << ",\"causal\":" << (mask.causal ? "true" : "false");
  os << ",\"dtype\":\"" << opt.dtype << "\"";
  if (dt == DType::BF16) os << ",\"isa\":\"" << cpu::attention_bf16_isa() << "\"";
  os << ",\"threads\":" << omp_get_max_threads() << ",\"density\":" << num(static_cast<double>(pairs) / static_cast<double>(b * n * n), 4)
     << ",\"fwd_ms\":" << num(fwd * 1e3, 2) << ",\"bwd_ms\":" << num(bwd * 1e3, 2)
     << ",\"fwd_gflops\":" << num(useful / fwd / 1e9, 2) << ",\"fwd_bwd_gflops\":" << num(3.5 * useful / (fwd + bwd) / 1e9, 2)
     << ",\"peak_bytes\":" << peak;
  if (vs_f32)
    os << ",\"f32_fwd_ms\":" << num(fwd32 * 1e3, 2) << ",\"f32_bwd_ms\":" << num(bwd32 * 1e3, 2)
       << ",\"speedup_fwd\":" << num(fwd32 / fwd, 3) << ",\"speedup_fwd_bwd\":" << num((fwd32 + bwd32) / (fwd + bwd), 3)
       << ",\"fwd_cpu_ms\":" << num(cpu_f * 1e3, 2) << ",\"f32_fwd_cpu_ms\":" << num(cpu_f32 * 1e3, 2)
       << ",\"speedup_fwd_cpu\":" << num(cpu_f32 / cpu_f, 3) << ",\"fwd_bwd_cpu_ms\":" << num(cpu * 1e3, 2) << ",\"f32_fwd_bwd_cpu_ms\":" << num(cpu32 * 1e3, 2)
       << ",\"speedup_fwd_bwd_cpu\":" << num(cpu32 / cpu, 3);
  if (opt.check) {
    const std::vector<Tensor> grads = {q.grad(), k.grad(), v.grad()};
    os << check_errors(q, k, v, go, mask, out, grads);
  }
  if (opt.tiles) {
    omp_set_num_threads(1);  // one tile on one core, the way the kernels run it
    os << tile_rates(d);
  }
  os << "}";
  std::printf("%s\n", os.str().c_str());
  std::fflush(stdout);
}

}  // namespace

void add_bench_attention(CLI::App& bench) {
  auto opt = std::make_shared<BenchAttentionOptions>();
  CLI::App* cmd = bench.add_subcommand("attention", "Tiled attention forward + backward (JSON line)");
  cmd->add_option("--seq", opt->seq, "sequence length N (queries and keys)")->check(CLI::PositiveNumber);
  cmd->add_option("--heads", opt->heads, "query heads")->check(CLI::PositiveNumber);
  cmd->add_option("--kv-heads", opt->kv_heads, "key/value heads (GQA, MQA); default: --heads")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--head-dim", opt->head_dim, "head dimension D")->check(CLI::PositiveNumber);
  cmd->add_option("--batch", opt->batch, "batch size")->check(CLI::PositiveNumber);
  cmd->add_flag("--causal", opt->causal, "causal mask (with --pattern: that pattern's causal form)");
  cmd->add_option("--window", opt->window, "sliding window: keys up to W positions back")
                     ->check(CLI::NonNegativeNumber);
  cmd->add_option("--window-right", opt->window_right, "keys up to this many positions ahead (encoders)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--pattern", opt->pattern, "full, causal, sliding, dilated, longformer or bigbird");
  cmd->add_option("--dilation", opt->dilation, "dilated: every d-th key")->check(CLI::PositiveNumber);
  cmd->add_option("--globals", opt->globals, "longformer/bigbird: the first G positions are global tokens")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--block-size", opt->block_size, "bigbird: random block size")->check(CLI::PositiveNumber);
  cmd->add_option("--random-blocks", opt->random_blocks, "bigbird: random key blocks per query block")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--dtype", opt->dtype,
                  "f32, bf16 (bf16 inputs, float32 accumulation; the ISA is in \"isa\") or int8 (inference "
                  "forward with INT8 scores, timed beside f32)");
  cmd->add_flag("--vs-f32", opt->vs_f32, "with --dtype bf16: also time float32 on the same values, interleaved, and the speedup");
  cmd->add_option("--threads", opt->threads, "OpenMP threads; 0 keeps OMP_NUM_THREADS")->check(CLI::NonNegativeNumber);
  cmd->add_option("--reps", opt->reps, "timed repetitions after a warm-up; the best is reported (--sp > 1: the median)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--sp", opt->sp, "sequence-parallel ranks: ring attention over mpirun's ranks (must equal -np)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--layout", opt->layout, "with --sp > 1: contiguous, zigzag, or auto (zigzag for a causal mask, as training)");
  cmd->add_flag("--check", opt->check, "also report the largest errors against the float64 reference");
  cmd->add_flag("--tiles", opt->tiles, "also report one tile product's rate: micro-kernel vs cblas_sgemm");
  cmd->callback([opt] { run_bench_attention(*opt); });
}

}  // namespace strand::launch
