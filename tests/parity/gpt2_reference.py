"""An independent GPT-2 in PyTorch (float64), AdamW, and the readers the parity checks need:
strand checkpoints through h5py and llm.c .bin token shards by strand's row rule.

Written from the GPT-2 paper / Hugging Face GPT2LMHeadModel conventions, not from strand's code:
learned positions, pre-LayerNorm (eps 1e-5), causal multi-head attention with q, k, v side by
side in c_attn, GELU with the tanh approximation, tied output embedding, linear layers used as
x @ W + b with W stored [in, out] (GPT-2's Conv1D).
"""
import math
from dataclasses import dataclass

import h5py
import numpy as np
import torch


@dataclass
class GPT2Shape:
    n_layer: int
    n_head: int
    d_model: int
    vocab_size: int
    max_seq_len: int
    tied: bool


def parse_strand_yaml(text):
    """The checkpoint's `config` attribute (strand's to_yaml: nested `key: value` blocks, two
    spaces per level) as a flat dict of dotted keys to strings. Enough for the keys read here,
    and no dependency on PyYAML."""
    flat, stack = {}, []
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        depth = (len(line) - len(line.lstrip(" "))) // 2
        key, _, value = line.strip().partition(":")
        del stack[depth:]
        value = value.strip()
        if value == "":
            stack.append(key)
        else:
            flat[".".join(stack + [key])] = value.strip('"')
    return flat


def load_checkpoint(path):
    """(config dict, model params {name: float64 tensor}, optimizer {m/<p>, v/<p>}, optimizer
    step, trainer group {name: numpy}) of a strand checkpoint."""
    with h5py.File(path, "r") as f:
        assert f.attrs["format"] in ("strand-checkpoint", b"strand-checkpoint"), f"{path}: not a strand checkpoint"
        config_text = f.attrs["config"]
        config = parse_strand_yaml(config_text.decode() if isinstance(config_text, bytes) else config_text)
        params = {name: torch.from_numpy(np.array(ds[...], dtype=np.float64)) for name, ds in f["model"].items()}
        moments = {}
        f["optimizer"].visititems(
            lambda name, obj: moments.__setitem__(name, torch.from_numpy(np.array(obj[...], dtype=np.float64)))
            if isinstance(obj, h5py.Dataset) and name != "step" else None)
        opt_step = int(f["optimizer/step"][0])
        trainer = {}
        f["trainer"].visititems(
            lambda name, obj: trainer.__setitem__(name, np.array(obj[...])) if isinstance(obj, h5py.Dataset) else None)
    return config, params, moments, opt_step, trainer


def kept_heads(path):
    """[[kept query heads of layer i, original indices]...] of a pruned checkpoint (its group
    /pruning, docs/checkpoint-format.md "Pruned models"), or None for an unpruned one."""
    with h5py.File(path, "r") as f:
        if "pruning" not in f:
            return None
        g = f["pruning"]
        n_layer = sum(1 for name in g if name.endswith(".kept_heads"))
        return [[int(h) for h in g[f"layer_{i}.kept_heads"][...]] for i in range(n_layer)]


def shape_of(config):
    def get(key):
        return config["model." + key]
    assert get("arch") == "gpt" and get("pos") == "learned" and get("norm") == "layernorm", config
    assert get("activation") == "gelu" and get("attention.pattern") == "causal", config
    assert get("n_kv_head") == get("n_head") and int(get("d_ff")) == 4 * int(get("d_model")), config
    return GPT2Shape(n_layer=int(get("n_layer")), n_head=int(get("n_head")), d_model=int(get("d_model")),
                     vocab_size=int(get("vocab_size")), max_seq_len=int(get("max_seq_len")),
                     tied=get("tie_embeddings") == "true")


# ---- the model ----

def layer_norm(x, weight, bias, eps=1e-5):
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)  # biased, as nn.LayerNorm
    return (x - mean) / torch.sqrt(var + eps) * weight + bias


def gelu_tanh(x):  # Hugging Face "gelu_new"
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def attention(x, w_qkv, b_qkv, w_proj, b_proj, head_dim):
    """Heads of width head_dim; their number is read from the weights, so a pruned layer
    (c_attn [C, 3 h D], c_proj [h D, C], the kept heads in order) is computed as it is."""
    B, T, _ = x.shape
    D = head_dim
    W = w_qkv.shape[1] // 3  # h D: the width of q, k and v
    H = W // D
    q, k, v = (x @ w_qkv + b_qkv).split(W, dim=2)
    q, k, v = (t.reshape(B, T, H, D).transpose(1, 2) for t in (q, k, v))  # [B, H, T, D]
    scores = (q @ k.transpose(-2, -1)) / math.sqrt(D)
    future = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)
    probs = torch.softmax(scores.masked_fill(future, float("-inf")), dim=-1)
    y = (probs @ v).transpose(1, 2).reshape(B, T, W)
    return y @ w_proj + b_proj


def logits(p, shape, inputs):
    """inputs [B, T] int64 -> logits [B, T, V]."""
    T = inputs.shape[1]
    x = p["transformer.wte.weight"][inputs] + p["transformer.wpe.weight"][:T]
    for i in range(shape.n_layer):
        h = f"transformer.h.{i}."
        a = layer_norm(x, p[h + "ln_1.weight"], p[h + "ln_1.bias"])
        x = x + attention(a, p[h + "attn.c_attn.weight"], p[h + "attn.c_attn.bias"], p[h + "attn.c_proj.weight"],
                          p[h + "attn.c_proj.bias"], shape.d_model // shape.n_head)
        m = layer_norm(x, p[h + "ln_2.weight"], p[h + "ln_2.bias"])
        x = x + gelu_tanh(m @ p[h + "mlp.c_fc.weight"] + p[h + "mlp.c_fc.bias"]) @ p[h + "mlp.c_proj.weight"] \
            + p[h + "mlp.c_proj.bias"]
    x = layer_norm(x, p["transformer.ln_f.weight"], p["transformer.ln_f.bias"])
    out = p["transformer.wte.weight"] if shape.tied else p["lm_head.weight"]
    return x @ out.T


def loss_sum(p, shape, inputs, targets):
    """Summed next-token cross-entropy over every target."""
    logp = torch.log_softmax(logits(p, shape, inputs), dim=-1)
    return -logp.gather(-1, targets.unsqueeze(-1)).sum()


# ---- AdamW (Loshchilov & Hutter; torch.optim.AdamW's order of operations) ----

def adamw_step(param, grad, m, v, t, lr, beta1, beta2, eps, weight_decay):
    """Step t (1-based) for one tensor; returns (param, m, v). Decoupled decay first."""
    param = param * (1.0 - lr * weight_decay)
    m = beta1 * m + (1.0 - beta1) * grad
    v = beta2 * v + (1.0 - beta2) * grad * grad
    m_hat = m / (1.0 - beta1 ** t)
    v_hat = v / (1.0 - beta2 ** t)
    return param - lr * m_hat / (torch.sqrt(v_hat) + eps), m, v


# ---- token shards and rows ----

def read_bin(path):
    """llm.c .bin: 256 int32 header (magic 20240520, version 1, N), then N uint16 tokens."""
    header = np.fromfile(path, dtype="<i4", count=256)
    assert header[0] == 20240520 and header[1] == 1, f"{path}: not an llm.c version-1 token shard"
    tokens = np.fromfile(path, dtype="<u2", offset=1024)
    assert len(tokens) == header[2], f"{path}: header says {header[2]} tokens, file holds {len(tokens)}"
    return tokens.astype(np.int64)


def batch_at(tokens, step, batch_size, seq_len):
    """Rows of loader step `step` for one process (docs/data-format.md): row r is global row
    g = s*B + r, tokens [g*T, g*T + T + 1), with s the step within its epoch."""
    steps_per_epoch = ((len(tokens) - 1) // seq_len) // batch_size
    s = step % steps_per_epoch
    rows = np.stack([tokens[(s * batch_size + r) * seq_len:(s * batch_size + r) * seq_len + seq_len + 1]
                     for r in range(batch_size)])
    rows = torch.from_numpy(rows)
    return rows[:, :-1], rows[:, 1:]
