// Attention transfer (attention_transfer.h): the per-row KL of two attention distributions in one
// online pass over key blocks (head by head) or two (head-averaged), its gradient to the student's
// q and k from the saved lse, and the autograd op over them.
#include "framework/ops/attention_transfer.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>

#include "framework/autograd/grad_mode.h"
#include "framework/autograd/node.h"
#include "framework/core/error.h"
#include "framework/ops/attention_rows.h"
#include "framework/ops/dispatch.h"

namespace strand::ops {
namespace {

constexpr double kNegInf = -std::numeric_limits<double>::infinity();

// Online softmax statistics of one row: max m, l = sum_j exp(s_j - m), and for the teacher side
// a = sum_j exp(s_t,j - m) s_t,j and c = sum_j exp(s_t,j - m) s_s,j (rescaled as m grows).
struct Running {
  double m = kNegInf, l = 0.0, a = 0.0, c = 0.0;
  void rescale_to(double block_max) {
    if (block_max <= m) return;
    const double r = std::isfinite(m) ? std::exp(m - block_max) : 0.0;
    l *= r;
    a *= r;
    c *= r;
    m = block_max;
  }
};

double block_max(const double* scores, int64_t n) {
  double m = kNegInf;
  for (int64_t j = 0; j < n; ++j) m = std::max(m, scores[j]);
  return m;
}

const double* query_row(const AttentionHeadsView& v, int64_t b, int64_t h, int64_t i) {
  return v.q + ((b * v.H + h) * v.q_rows + v.row0 + i) * v.D;
}
const double* key_head(const AttentionHeadsView& v, int64_t b, int64_t h) {
  return v.k + (b * v.Hkv + h / (v.H / v.Hkv)) * v.Nk * v.D;
}

void check_views(const AttentionHeadsView& s, const AttentionHeadsView& t, int64_t block) {
  STRAND_CHECK(s.B == t.B && s.H > 0 && t.H > 0 && s.Nq == t.Nq && s.Nk == t.Nk && s.q_rows == t.q_rows &&
                   s.row0 == t.row0 && s.Hkv > 0 && t.Hkv > 0 && s.H % s.Hkv == 0 && t.H % t.Hkv == 0 && block >= 1,
               ShapeError, "attention_transfer: student and teacher views do not fit together (or key block ", block,
               " < 1)");
}

// The values of q and k as float64, with the shape fields of a view over all of q's rows.
struct HeadsF64 {
  std::vector<double> q, k;
  std::vector<uint8_t> keep;  // [B, Nq] when rows are sampled
  AttentionHeadsView view;
  HeadsF64(const Tensor& qt, const Tensor& kt, double scale) {
    q = contiguous_data(qt).to_vector();
    k = contiguous_data(kt).to_vector();
    view.q = q.data();
    view.k = k.data();
    view.B = qt.size(0);
    view.H = qt.size(1);
    view.q_rows = view.Nq = qt.size(2);
    view.D = qt.size(3);
    view.Hkv = kt.size(1);
    view.Nk = kt.size(2);
    view.scale = attention_scale(scale, view.D);
  }
  // Scores only the query rows `sample` draws at global positions q_offset + i.
  void sample_rows(const RowSample& sample, int64_t q_offset) {
    keep.resize(static_cast<size_t>(view.B * view.Nq));
    for (int64_t b = 0; b < view.B; ++b) {
      const std::vector<uint8_t> drawn = drawn_rows(sample, b, q_offset, view.Nq);
      std::copy(drawn.begin(), drawn.end(), keep.begin() + b * view.Nq);
    }
    view.keep = keep.data();
  }
  HeadsF64(const HeadsF64&) = delete;
  HeadsF64& operator=(const HeadsF64&) = delete;
};

struct AttentionTransferBackward final : autograd::Node {
  std::unique_ptr<HeadsF64> s, t;
  MaskSpec mask;
  AttentionTransferRows rows;
  double divisor, weight;  // the reduction's and the row sample's
  int64_t block;
  Shape q_shape, k_shape;
  DType dtype;
  Device device;  // of the student's q and k: the gradients go back there
  AttentionTransferBackward(std::unique_ptr<HeadsF64> s_, std::unique_ptr<HeadsF64> t_, MaskSpec m,
                            AttentionTransferRows r, double div, double w, int64_t blk, Shape qs, Shape ks, DType dt,
                            Device dev)
      : Node("attention_transfer_loss"), s(std::move(s_)), t(std::move(t_)), mask(std::move(m)), rows(std::move(r)),
        divisor(div), weight(w), block(blk), q_shape(std::move(qs)), k_shape(std::move(ks)), dtype(dt), device(dev) {}
  std::vector<Tensor> apply(std::vector<Tensor>&& g) override {
    const MaskPlan plan(mask, s->view.B, s->view.Nq, s->view.Nk, "attention_transfer_loss");
    std::vector<double> dq(s->q.size(), 0.0), dk(s->k.size(), 0.0);
    attention_transfer_grads(s->view, t->view, plan, rows, g[0].item() / divisor * weight, dq, dk, block);
    auto placed = [&](const std::vector<double>& v, const Shape& shape) {
      const Tensor t = Tensor::from_vector(v, shape, dtype);  // host memory
      return device.is_cpu() ? t : t.copy_as(dtype, device);
    };
    return {placed(dq, q_shape), placed(dk, k_shape)};
  }
};


// Every head's scores of one side for query row i of batch row b against keys [k0, k1):
// out[h * block + j - k0]. False when the mask hides the whole block (alike for every head).
bool heads_block_scores(const AttentionHeadsView& v, const MaskPlan& plan, int64_t b, int64_t i, int64_t k0,
                        int64_t k1, int64_t block, double* out) {
  const int64_t qpos = plan.q_offset() + i;
  for (int64_t h = 0; h < v.H; ++h)
    if (!detail::row_block_scores(plan, b, qpos, query_row(v, b, h, i), key_head(v, b, h), v.D, v.scale, k0, k1,
                                  out + h * block))
      return false;
  return true;
}

// (1 / H) sum_h exp(s_h,j - lse_h): the head-averaged probability of key j.
double head_mean(const double* scores, const std::vector<double>& lse, int64_t block, int64_t j) {
  const int64_t H = static_cast<int64_t>(lse.size());
  double p = 0.0;
  for (int64_t h = 0; h < H; ++h) p += std::exp(scores[h * block + j] - lse[static_cast<size_t>(h)]);
  return p / static_cast<double>(H);
}

size_t lse_index(const AttentionHeadsView& v, int64_t b, int64_t h, int64_t i) {
  return static_cast<size_t>((b * v.H + h) * v.q_rows + v.row0 + i);
}

// The row's lse per head of both sides from `rows`; false for a row that is skipped or sees no key.
bool row_lses(const AttentionHeadsView& s, const AttentionHeadsView& t, const AttentionTransferRows& rows, int64_t b,
              int64_t i, std::vector<double>& ls, std::vector<double>& lt) {
  for (int64_t h = 0; h < s.H; ++h) ls[static_cast<size_t>(h)] = rows.lse_s[lse_index(s, b, h, i)];
  for (int64_t h = 0; h < t.H; ++h) lt[static_cast<size_t>(h)] = rows.lse_t[lse_index(t, b, h, i)];
  return std::isfinite(ls[0]) && std::isfinite(lt[0]);
}

bool row_kept(const AttentionHeadsView& s, int64_t b, int64_t i) {
  return s.keep == nullptr || s.keep[b * s.q_rows + s.row0 + i] != 0;
}

// Scores query row i of both sides against keys [k0, k1) (ss, st: [H, block] scores) and gives
// each key's head-averaged probabilities, p (teacher) and q (student), NaN where the key is
// masked (for every head alike). False when no key of the block is visible.
bool averaged_block(const AttentionHeadsView& s, const AttentionHeadsView& t, const MaskPlan& plan, int64_t b,
                    int64_t i, int64_t k0, int64_t k1, int64_t block, const std::vector<double>& ls,
                    const std::vector<double>& lt, std::vector<double>& ss, std::vector<double>& st,
                    std::vector<double>& p, std::vector<double>& q) {
  if (!heads_block_scores(t, plan, b, i, k0, k1, block, st.data())) return false;
  heads_block_scores(s, plan, b, i, k0, k1, block, ss.data());
  constexpr double kMasked = std::numeric_limits<double>::quiet_NaN();
  for (int64_t j = 0; j < k1 - k0; ++j) {
    const bool seen = std::isfinite(st[static_cast<size_t>(j)]);
    p[static_cast<size_t>(j)] = seen ? head_mean(st.data(), lt, block, j) : kMasked;
    q[static_cast<size_t>(j)] = seen ? head_mean(ss.data(), ls, block, j) : kMasked;
  }
  return true;
}

// The head-averaged rows: pass 1 each head's lse (online max and sum), pass 2 the KL of the
// averages, which are normalised already.
void averaged_rows(const AttentionHeadsView& s, const AttentionHeadsView& t, const MaskPlan& plan,
                   AttentionTransferRows& rows, int64_t block) {
  #pragma omp parallel for schedule(dynamic) collapse(2)
  for (int64_t b = 0; b < s.B; ++b)
    for (int64_t i = 0; i < s.Nq; ++i) {
      if (!row_kept(s, b, i)) continue;
      std::vector<double> ss(static_cast<size_t>(s.H * block)), st(static_cast<size_t>(t.H * block));
      std::vector<Running> rs(static_cast<size_t>(s.H)), rt(static_cast<size_t>(t.H));
      auto accumulate = [](std::vector<Running>& run, const double* scores, int64_t block_, int64_t n) {
        for (size_t h = 0; h < run.size(); ++h) {
          const double* sc = scores + static_cast<int64_t>(h) * block_;
          run[h].rescale_to(block_max(sc, n));
          for (int64_t j = 0; j < n; ++j)
            if (std::isfinite(sc[j])) run[h].l += std::exp(sc[j] - run[h].m);
        }
      };
      for (int64_t k0 = 0; k0 < s.Nk; k0 += block) {
        const int64_t k1 = std::min(s.Nk, k0 + block);
        if (!heads_block_scores(t, plan, b, i, k0, k1, block, st.data())) continue;
        heads_block_scores(s, plan, b, i, k0, k1, block, ss.data());
        accumulate(rt, st.data(), block, k1 - k0);
        accumulate(rs, ss.data(), block, k1 - k0);
      }
      if (rt[0].l == 0.0) continue;  // no key visible
      std::vector<double> ls(static_cast<size_t>(s.H)), lt(static_cast<size_t>(t.H));
      for (int64_t h = 0; h < s.H; ++h)
        rows.lse_s[lse_index(s, b, h, i)] = ls[static_cast<size_t>(h)] =
            rs[static_cast<size_t>(h)].m + std::log(rs[static_cast<size_t>(h)].l);
      for (int64_t h = 0; h < t.H; ++h)
        rows.lse_t[lse_index(t, b, h, i)] = lt[static_cast<size_t>(h)] =
            rt[static_cast<size_t>(h)].m + std::log(rt[static_cast<size_t>(h)].l);
      double kl = 0.0;
      std::vector<double> pb(static_cast<size_t>(block)), qb(static_cast<size_t>(block));
      for (int64_t k0 = 0; k0 < s.Nk; k0 += block) {
        const int64_t k1 = std::min(s.Nk, k0 + block);
        if (!averaged_block(s, t, plan, b, i, k0, k1, block, ls, lt, ss, st, pb, qb)) continue;
        for (int64_t j = 0; j < k1 - k0; ++j) {
          const double p = pb[static_cast<size_t>(j)], q = qb[static_cast<size_t>(j)];
          if (p > 0.0) kl += p * (std::log(p) - std::log(q));  // false for a masked key (NaN)
        }
      }
      rows.kl[static_cast<size_t>(b * s.q_rows + s.row0 + i)] = kl;
    }
}

// The head-averaged gradient. L = sum_j p_j log p_j - sum_j p_j log q_j with q_j = (1/H) sum_h a_h,j
// and a_h = softmax(s_h): dL/da_h,j = -r_j / H (r_j = p_j / q_j), so through the softmax
// dL/ds_h,k = a_h,k (dL/da_h,k - sum_j a_h,j dL/da_h,j) = (a_h,k / H) (c_h - r_k), c_h = sum_j r_j a_h,j.
// Phase 1, one thread per row: c_h and dq = scale sum_k dS_h,k k_k = (scale / H)(c_h u_h - w_h) with
// u_h = sum_k a_h,k k_k and w_h = sum_k a_h,k r_k k_k, all in one pass. Phase 2, one thread per
// (b, key block): dk_k = scale sum_i sum_h dS_h,i,k q_h,i for the block's keys alone (no races, a
// fixed order: the same sums at any thread count).
void averaged_grads(const AttentionHeadsView& s, const AttentionHeadsView& t, const MaskPlan& plan,
                    const AttentionTransferRows& rows, double g, std::vector<double>& dq, std::vector<double>& dk,
                    int64_t block) {
  const int64_t H = s.H, D = s.D, group = s.H / s.Hkv;
  const double f = g * s.scale / static_cast<double>(H);
  std::vector<double> c(static_cast<size_t>(s.B * H * s.Nq), 0.0);  // [B, H_s, Nq]
  #pragma omp parallel for schedule(dynamic) collapse(2)
  for (int64_t b = 0; b < s.B; ++b)
    for (int64_t i = 0; i < s.Nq; ++i) {
      std::vector<double> ls(static_cast<size_t>(H)), lt(static_cast<size_t>(t.H));
      if (!row_lses(s, t, rows, b, i, ls, lt)) continue;
      std::vector<double> ss(static_cast<size_t>(H * block)), st(static_cast<size_t>(t.H * block));
      std::vector<double> u(static_cast<size_t>(H * D), 0.0), w(static_cast<size_t>(H * D), 0.0);
      std::vector<double> ch(static_cast<size_t>(H), 0.0);
      std::vector<double> pb(static_cast<size_t>(block)), qb(static_cast<size_t>(block));
      for (int64_t k0 = 0; k0 < s.Nk; k0 += block) {
        const int64_t k1 = std::min(s.Nk, k0 + block);
        if (!averaged_block(s, t, plan, b, i, k0, k1, block, ls, lt, ss, st, pb, qb)) continue;
        for (int64_t j = 0; j < k1 - k0; ++j) {
          if (std::isnan(pb[static_cast<size_t>(j)])) continue;  // masked
          const double r = pb[static_cast<size_t>(j)] / qb[static_cast<size_t>(j)];
          for (int64_t h = 0; h < H; ++h) {
            const double a = std::exp(ss[static_cast<size_t>(h * block + j)] - ls[static_cast<size_t>(h)]);
            ch[static_cast<size_t>(h)] += r * a;
            const double* kj = key_head(s, b, h) + (k0 + j) * D;
            double *uh = u.data() + h * D, *wh = w.data() + h * D;
            for (int64_t x = 0; x < D; ++x) {
              uh[x] += a * kj[x];
              wh[x] += a * r * kj[x];
            }
          }
        }
      }
      for (int64_t h = 0; h < H; ++h) {
        c[static_cast<size_t>((b * H + h) * s.Nq + i)] = ch[static_cast<size_t>(h)];
        double* dqi = dq.data() + static_cast<int64_t>(lse_index(s, b, h, i)) * D;
        const double* uh = u.data() + h * D;
        const double* wh = w.data() + h * D;
        for (int64_t x = 0; x < D; ++x) dqi[x] += f * (ch[static_cast<size_t>(h)] * uh[x] - wh[x]);
      }
    }
  const int64_t blocks = (s.Nk + block - 1) / block;
  #pragma omp parallel for schedule(dynamic) collapse(2)
  for (int64_t b = 0; b < s.B; ++b)
    for (int64_t kb = 0; kb < blocks; ++kb) {
      const int64_t k0 = kb * block, k1 = std::min(s.Nk, k0 + block);
      std::vector<double> ls(static_cast<size_t>(H)), lt(static_cast<size_t>(t.H));
      std::vector<double> ss(static_cast<size_t>(H * block)), st(static_cast<size_t>(t.H * block));
      std::vector<double> pb(static_cast<size_t>(block)), qb(static_cast<size_t>(block));
      for (int64_t i = 0; i < s.Nq; ++i) {
        if (!row_lses(s, t, rows, b, i, ls, lt)) continue;
        if (!averaged_block(s, t, plan, b, i, k0, k1, block, ls, lt, ss, st, pb, qb)) continue;
        for (int64_t j = 0; j < k1 - k0; ++j) {
          if (std::isnan(pb[static_cast<size_t>(j)])) continue;  // masked
          const double r = pb[static_cast<size_t>(j)] / qb[static_cast<size_t>(j)];
          for (int64_t h = 0; h < H; ++h) {
            const double a = std::exp(ss[static_cast<size_t>(h * block + j)] - ls[static_cast<size_t>(h)]);
            const double ds = f * a * (c[static_cast<size_t>((b * H + h) * s.Nq + i)] - r);
            const double* qh = query_row(s, b, h, i);
            double* dkj = dk.data() + ((b * s.Hkv + h / group) * s.Nk + k0 + j) * D;
            for (int64_t x = 0; x < D; ++x) dkj[x] += ds * qh[x];
          }
        }
      }
    }
}

}  // namespace

AttentionTransferRows::AttentionTransferRows(size_t n) : kl(n, 0.0), lse_s(n, kNegInf), lse_t(n, kNegInf) {}

AttentionTransferRows::AttentionTransferRows(const AttentionHeadsView& s, const AttentionHeadsView& t)
    : kl(static_cast<size_t>(s.B * (heads_averaged(s, t) ? 1 : s.H) * s.q_rows), 0.0),
      lse_s(static_cast<size_t>(s.B * s.H * s.q_rows), kNegInf),
      lse_t(static_cast<size_t>(t.B * t.H * t.q_rows), kNegInf) {}

void attention_transfer_rows(const AttentionHeadsView& s, const AttentionHeadsView& t, const MaskPlan& plan,
                             AttentionTransferRows& rows, int64_t block) {
  check_views(s, t, block);
  if (heads_averaged(s, t)) return averaged_rows(s, t, plan, rows, block);
  #pragma omp parallel for schedule(dynamic) collapse(2)
  for (int64_t b = 0; b < s.B; ++b)
    for (int64_t h = 0; h < s.H; ++h) {
      std::vector<double> ss(static_cast<size_t>(block)), st(static_cast<size_t>(block));
      const double *ks = key_head(s, b, h), *kt = key_head(t, b, h);
      for (int64_t i = 0; i < s.Nq; ++i) {
        if (!row_kept(s, b, i)) continue;
        const int64_t qpos = plan.q_offset() + i;
        const double *qs = query_row(s, b, h, i), *qt = query_row(t, b, h, i);
        Running rt, rs;  // rt keeps a and c; rs only m and l
        for (int64_t k0 = 0; k0 < s.Nk; k0 += block) {
          const int64_t k1 = std::min(s.Nk, k0 + block), n = k1 - k0;
          if (!detail::row_block_scores(plan, b, qpos, qt, kt, t.D, t.scale, k0, k1, st.data())) continue;
          detail::row_block_scores(plan, b, qpos, qs, ks, s.D, s.scale, k0, k1, ss.data());  // same mask
          rt.rescale_to(block_max(st.data(), n));
          rs.rescale_to(block_max(ss.data(), n));
          for (int64_t j = 0; j < n; ++j) {
            if (!std::isfinite(st[static_cast<size_t>(j)])) continue;  // masked: both sides alike
            const double e = std::exp(st[static_cast<size_t>(j)] - rt.m);
            rt.l += e;
            rt.a += e * st[static_cast<size_t>(j)];
            rt.c += e * ss[static_cast<size_t>(j)];
            rs.l += std::exp(ss[static_cast<size_t>(j)] - rs.m);
          }
        }
        if (rt.l == 0.0) continue;  // no key visible
        const size_t row = static_cast<size_t>((b * s.H + h) * s.q_rows + s.row0 + i);
        rows.lse_t[row] = rt.m + std::log(rt.l);
        rows.lse_s[row] = rs.m + std::log(rs.l);
        rows.kl[row] = (rt.a - rt.c) / rt.l - rows.lse_t[row] + rows.lse_s[row];
      }
    }
}

void attention_transfer_grads(const AttentionHeadsView& s, const AttentionHeadsView& t, const MaskPlan& plan,
                              const AttentionTransferRows& rows, double g, std::vector<double>& dq,
                              std::vector<double>& dk, int64_t block) {
  check_views(s, t, block);
  if (heads_averaged(s, t)) return averaged_grads(s, t, plan, rows, g, dq, dk, block);
  const int64_t group = s.H / s.Hkv, D = s.D;
  // One thread per (b, student key head): the query heads that share it add into its dk alone.
  #pragma omp parallel for schedule(dynamic) collapse(2)
  for (int64_t b = 0; b < s.B; ++b)
    for (int64_t hk = 0; hk < s.Hkv; ++hk) {
      std::vector<double> ss(static_cast<size_t>(block)), st(static_cast<size_t>(block));
      double* dkh = dk.data() + (b * s.Hkv + hk) * s.Nk * D;
      for (int64_t h = hk * group; h < (hk + 1) * group; ++h) {
        const double *ks = key_head(s, b, h), *kt = key_head(t, b, h);
        for (int64_t i = 0; i < s.Nq; ++i) {
          const size_t row = static_cast<size_t>((b * s.H + h) * s.q_rows + s.row0 + i);
          const double lse_s = rows.lse_s[row], lse_t = rows.lse_t[row];
          if (!std::isfinite(lse_s)) continue;
          const int64_t qpos = plan.q_offset() + i;
          const double *qs = query_row(s, b, h, i), *qt = query_row(t, b, h, i);
          double* dqi = dq.data() + static_cast<int64_t>(row) * D;
          for (int64_t k0 = 0; k0 < s.Nk; k0 += block) {
            const int64_t k1 = std::min(s.Nk, k0 + block);
            if (!detail::row_block_scores(plan, b, qpos, qt, kt, t.D, t.scale, k0, k1, st.data())) continue;
            detail::row_block_scores(plan, b, qpos, qs, ks, s.D, s.scale, k0, k1, ss.data());
            for (int64_t j = k0; j < k1; ++j) {
              const double sc_s = ss[static_cast<size_t>(j - k0)], sc_t = st[static_cast<size_t>(j - k0)];
              if (!std::isfinite(sc_t)) continue;
              const double ds = g * (std::exp(sc_s - lse_s) - std::exp(sc_t - lse_t)) * s.scale;
              const double* kj = ks + j * D;
              double* dkj = dkh + j * D;
              for (int64_t x = 0; x < D; ++x) {
                dqi[x] += ds * kj[x];
                dkj[x] += ds * qs[x];
              }
            }
          }
        }
      }
    }
}

void check_attention_heads(const char* op, const char* side, const Tensor& q, const Tensor& k) {
  STRAND_CHECK(q.defined() && k.defined() && q.dim() == 4 && k.dim() == 4, ShapeError, op, ": the ", side,
               "'s q [B, H, Nq, D] and k [B, Hkv, Nk, D] expected");
  STRAND_CHECK(k.size(0) == q.size(0) && k.size(3) == q.size(3) && k.size(1) > 0 && q.size(1) % k.size(1) == 0,
               ShapeError, op, ": the ", side, "'s q ", describe(q), " and k ", describe(k), " do not fit together");
}

void check_transfer_pair(const char* op, const Tensor& q_s, const Tensor& k_s, const Tensor& q_t, const Tensor& k_t) {
  check_attention_heads(op, "student", q_s, k_s);
  check_attention_heads(op, "teacher", q_t, k_t);
  STRAND_CHECK(q_s.size(0) == q_t.size(0) && q_s.size(2) == q_t.size(2) && k_s.size(2) == k_t.size(2), ShapeError,
               op, ": the student's q ", describe(q_s), " and k ", describe(k_s), " and the teacher's q ", describe(q_t),
               " and k ", describe(k_t), " cover different rows");
}

Tensor attention_transfer_loss(const Tensor& q_s, const Tensor& k_s, const Tensor& q_t, const Tensor& k_t,
                               const MaskSpec& mask, Reduction reduction, double scale_s, double scale_t,
                               int64_t block, const RowSample& sample) {
  const char* op = "attention_transfer_loss";
  check_transfer_pair(op, q_s, k_s, q_t, k_t);
  STRAND_CHECK(block >= 1, ValueError, op, ": key block ", block, " must be >= 1");
  STRAND_CHECK(sample.rows >= 0 && sample.rows <= q_s.size(2), ValueError, op, ": ", sample.rows,
               " sampled query rows; expected 0 (all) to the ", q_s.size(2), " rows");
  auto s = std::make_unique<HeadsF64>(q_s, k_s, scale_s);
  auto t = std::make_unique<HeadsF64>(q_t.detach(), k_t.detach(), scale_t);
  const MaskPlan plan(mask, s->view.B, s->view.Nq, s->view.Nk, op);
  if (sample.rows > 0) s->sample_rows(sample, plan.q_offset());
  AttentionTransferRows rows(s->view, t->view);
  attention_transfer_rows(s->view, t->view, plan, rows, block);
  double total = 0.0;  // in row order
  for (double kl : rows.kl) total += kl;
  // kl holds one value per (b, h, row), or per (b, row) with the heads averaged: Mean's count.
  const double divisor =
      reduction == Reduction::Mean ? std::max<double>(1.0, static_cast<double>(rows.kl.size())) : 1.0;
  const double weight = sample_weight(sample, s->view.Nq);  // 1 for all rows: no rounding
  Tensor loss = Tensor::full({}, total * weight / divisor, q_s.dtype(), q_s.device());
  if (auto n = autograd::make_node<AttentionTransferBackward>({&q_s, &k_s}, std::move(s), std::move(t), mask,
                                                              std::move(rows), divisor, weight, block, q_s.shape(),
                                                              k_s.shape(), q_s.dtype(), q_s.device()))
    autograd::set_history(n, {&loss});
  return loss;
}

}  // namespace strand::ops
