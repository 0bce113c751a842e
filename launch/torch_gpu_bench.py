#!/usr/bin/env python3
"""The PyTorch side of launch/device_check.sh's GPU benchmark, on one CUDA device.

gpt: GPT-2 124M training steps in torch eager (the shape of configs/gpt2-124m.yaml: V=50257,
T=1024, C=768, 12 layers, 12 heads, learned positions, pre-LayerNorm, GELU (tanh), tied
embeddings, dropout 0), causal attention through F.scaled_dot_product_attention, bf16 autocast
with fp32 master weights, fused AdamW, clipping at 1.0; random tokens. One step = forward,
backward, clip, optimizer step; the median of --steps timed steps after --warmup.
gemm: torch.matmul rate of an n x n x n product in bf16 and fp32 (TF32 off), the mean of ten
products after three warm-ups, timed with CUDA events.
Prints one JSON object. Without a GPU it prints {"skipped": "no GPU"} and exits 0.
"""
import argparse
import json
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, c, h):
        super().__init__()
        self.h = h
        self.ln_1, self.ln_2 = nn.LayerNorm(c), nn.LayerNorm(c)
        self.c_attn, self.c_proj = nn.Linear(c, 3 * c), nn.Linear(c, c)
        self.c_fc, self.mlp_proj = nn.Linear(c, 4 * c), nn.Linear(4 * c, c)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, self.h, C // self.h).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.c_proj(y.transpose(1, 2).reshape(B, T, C))
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))


class GPT(nn.Module):
    def __init__(self, v, t, l, h, c):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(v, c), nn.Embedding(t, c)
        self.h = nn.ModuleList(Block(c, h) for _ in range(l))
        self.ln_f = nn.LayerNorm(c)
        self.lm_head = nn.Linear(c, v, bias=False)
        self.lm_head.weight = self.wte.weight  # tied
        for m in self.modules():  # GPT-2 initialisation
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=0.02)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)

    def forward(self, idx, targets):
        T = idx.shape[1]
        x = self.wte(idx) + self.wpe(torch.arange(T, device=idx.device))
        for b in self.h:
            x = b(x)
        logits = self.lm_head(self.ln_f(x))
        return F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.reshape(-1))


def bench_gpt(args):
    dev = torch.device("cuda")
    torch.manual_seed(0)
    model = GPT(args.vocab, args.seq, args.n_layer, args.n_head, args.d_model).to(dev)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=6e-4, betas=(0.9, 0.95), fused=True)
    idx = torch.randint(0, args.vocab, (args.batch, args.seq), device=dev)
    tgt = torch.randint(0, args.vocab, (args.batch, args.seq), device=dev)
    times = []
    for step in range(args.warmup + args.steps):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = model(idx, tgt)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        if step >= args.warmup:
            times.append(time.perf_counter() - t0)
    sec = statistics.median(times)
    return {"step_s": sec, "tokens_per_s": args.batch * args.seq / sec, "batch": args.batch, "seq": args.seq,
            "loss": float(loss), "peak_mem_gib": torch.cuda.max_memory_allocated() / 2**30}


def bench_gemm(n, dtype):
    torch.backends.cuda.matmul.allow_tf32 = False
    a = torch.randn(n, n, device="cuda", dtype=dtype)
    b = torch.randn(n, n, device="cuda", dtype=dtype)
    for _ in range(3):
        torch.matmul(a, b)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(10):
        torch.matmul(a, b)
    end.record()
    torch.cuda.synchronize()
    sec = start.elapsed_time(end) / 1e3 / 10
    return {"n": n, "dtype": str(dtype).replace("torch.", ""), "s": sec, "tflops": 2 * n**3 / sec / 1e12}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("what", choices=["gpt", "gemm"])
    p.add_argument("--vocab", type=int, default=50257)
    p.add_argument("--n-layer", type=int, default=12)
    p.add_argument("--n-head", type=int, default=12)
    p.add_argument("--d-model", type=int, default=768)
    p.add_argument("--seq", type=int, default=1024)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--n", type=int, default=4096)
    args = p.parse_args()
    if not torch.cuda.is_available():
        print(json.dumps({"skipped": "no GPU"}))
        return
    out = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__}
    if args.what == "gpt":
        out.update(bench_gpt(args))
    else:
        out["gemm"] = [bench_gemm(args.n, torch.bfloat16), bench_gemm(args.n, torch.float32)]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
