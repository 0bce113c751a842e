#!/usr/bin/env python3
"""transformers loads strand's export of a pruned GPT-2 and computes what strand computes.

    PYTHON tests/parity/transformers_pruned.py BUILD/strand WORK

WORK is the --work folder of a finished run_parity.py run (parity.cmake's fixture); PYTHON an
interpreter with Debian's torch, h5py, numpy and Hugging Face transformers
(launch/setup_transformers.sh's venv). Exits 77 (CTest's skip code) where transformers is not
importable. `strand prune` removes different heads in different layers of that run's last
checkpoint (prune.method random, a fixed seed), once with no fine-tuning and once with two
fine-tuning steps; `strand export --format safetensors` writes both and the unpruned model, and:

 1. transformers prunes as strand does: the unpruned export, loaded and pruned by transformers'
    own `prune_heads` with the export's config.json `pruned_heads`, holds bit for bit the
    tensors `from_pretrained` loads from the export of the (not fine-tuned) pruned checkpoint;
 2. `GPT2LMHeadModel.from_pretrained` of the fine-tuned pruned export loads every tensor (no
    missing, unexpected or mismatched keys), builds each layer with the heads strand kept,
    and has the parameter count `strand inspect` prints;
 3. its float32 logits equal an independent float64 GPT-2 forward (gpt2_reference.py) of the
    checkpoint's weights to RTOL of the largest |logit|, and the mean cross-entropy over the
    validation rows equals `strand eval`'s loss of the pruned checkpoint to RTOL relative.
"""
import json
import re
import shutil
import sys
from pathlib import Path

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, str(Path(__file__).resolve().parent))
import run_parity as parity  # noqa: E402  (exits with the apt-get line where torch/h5py/numpy are missing)
import gpt2_reference as ref  # noqa: E402
import torch  # noqa: E402

PRUNE_SEED = 4  # prune.method random with this seed keeps heads [1, 3] of layer 0 and [0, 1, 2] of layer 1
HEADS_FRACTION = 0.375  # 3 of the 8 heads
FINETUNE_STEPS = 2
# float32 through 2 layers of contractions of width <= 256: rounding stays near sqrt(256) * 2^-24
# ~ 1e-6 of the logits' scale; 1e-5 of the largest |logit| leaves a margin of about 10.
RTOL = 1e-5


def prune(strand, cfg, base, run_dir, finetune_steps):
    """`strand prune` of `base` into run_dir; the path of its last round's checkpoint."""
    parity.run([strand, "prune", cfg, "--checkpoint", base, "--set", f"run.dir={run_dir}",
                "--set", f"prune.finetune_steps={finetune_steps}"])
    report = json.loads((run_dir / "prune_report.json").read_text())
    return Path(report["rounds"][-1]["checkpoint"]), report["rounds"][-1]


def export(strand, ckpt, out_dir):
    parity.run([strand, "export", ckpt, "--format", "safetensors", "--out", out_dir])
    return json.loads((out_dir / "config.json").read_text())


def check_pattern(checks, kept, n_head):
    removed = [[h for h in range(n_head) if h not in k] for k in kept]
    print(f"pruned: kept heads per layer {kept}, removed {removed}")
    checks.expect(all(removed) and len({len(k) for k in kept}) == len(kept),
                  "every layer lost heads, each layer a different number")
    checks.expect(any(r < k for ks, rs in zip(kept, removed) for r in rs for k in ks),
                  "a removed head lies below a kept one (kept heads shift down; else change PRUNE_SEED)")
    return removed


def check_transformers_prunes_alike(checks, hf_base, hf_sliced, pruned_heads):
    """1: transformers' own prune_heads on the unpruned export gives the pruned export's tensors."""
    from transformers import GPT2LMHeadModel
    own = GPT2LMHeadModel.from_pretrained(hf_base).eval()
    own.prune_heads({int(layer): heads for layer, heads in pruned_heads.items()})
    loaded = GPT2LMHeadModel.from_pretrained(hf_sliced).eval()
    a, b = own.state_dict(), loaded.state_dict()
    same = a.keys() == b.keys() and all(a[n].shape == b[n].shape and torch.equal(a[n], b[n]) for n in a)
    checks.expect(same, "the unpruned export pruned by transformers' prune_heads(pruned_heads) equals the "
                        "pruned export, tensor for tensor, bit for bit")


def check_tuned(checks, strand, cfg, ckpt, hf_dir, kept, val_bin):
    """2 and 3 on the fine-tuned pruned checkpoint."""
    from transformers import GPT2LMHeadModel
    model, info = GPT2LMHeadModel.from_pretrained(hf_dir, output_loading_info=True)
    model.eval()
    problems = {k: v for k, v in info.items() if v}
    checks.expect(not problems, "from_pretrained uses every tensor and misses none" +
                  (f" ({problems})" if problems else ""))
    heads = [layer.attn.num_heads for layer in model.transformer.h]
    checks.expect(heads == [len(k) for k in kept], f"transformers builds {heads} heads per layer, strand keeps "
                                                   f"{[len(k) for k in kept]}")
    inspected = re.search(r"([\d,]+) parameters", parity.run([strand, "inspect", ckpt]))
    strand_count = int(inspected.group(1).replace(",", "")) if inspected else -1
    hf_count = model.num_parameters()
    print(f"parameters: transformers {hf_count:,}, strand inspect {strand_count:,}")
    checks.expect(hf_count == strand_count, "transformers counts the parameters strand counts")

    config, params, _, _, _ = ref.load_checkpoint(ckpt)
    shape = ref.shape_of(config)
    B, T = int(config["data.batch_size"]), int(config["data.seq_len"])
    tokens = ref.read_bin(val_bin)
    worst, total, count = 0.0, 0.0, 0
    with torch.no_grad():
        for b in range(parity.EVAL_BATCHES):
            inputs, targets = ref.batch_at(tokens, b, B, T)
            got = model(inputs).logits.double()
            want = ref.logits(params, shape, inputs)
            worst = max(worst, float((got - want).abs().max() / want.abs().max()))
            logp = torch.log_softmax(got, dim=-1)
            total -= float(logp.gather(-1, targets.unsqueeze(-1)).sum())
            count += targets.numel()
    print(f"logits: max |transformers - float64 reference| / max |reference| = {worst:.2e} "
          f"over {parity.EVAL_BATCHES} batches of {B} x {T} tokens")
    checks.expect(worst <= RTOL, f"transformers' logits of the pruned export match the float64 reference to "
                                 f"{RTOL:g} of the largest |logit|")

    strand_eval = json.loads(parity.run([strand, "eval", cfg, "--checkpoint", ckpt]).strip().splitlines()[-1])
    loss = total / count
    rel = abs(strand_eval["loss"] - loss) / loss
    print(f"loss: strand eval {strand_eval['loss']:.10f} ({strand_eval['tokens']} tokens), transformers "
          f"{loss:.10f} ({count} tokens), relative difference {rel:.2e}")
    checks.expect(strand_eval["tokens"] == count and rel <= RTOL,
                  f"strand eval's loss of the pruned checkpoint equals transformers' to {RTOL:g} relative")


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__.split("\n\n")[1])
    try:
        import transformers
    except ImportError:
        print("parity: skipped: transformers is not importable (launch/setup_transformers.sh installs it)")
        return parity.SKIP_EXIT_CODE
    print(f"transformers {transformers.__version__}, torch {torch.__version__}")
    torch.set_num_threads(2)
    strand = Path(sys.argv[1]).resolve()
    work = Path(sys.argv[2]).resolve()
    base = work / "run" / "checkpoints" / f"step_{parity.STEPS + 1:08d}.h5"
    val_bin = work / "data" / "shakespeare_val.bin"
    out = work / "pruned"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    cfg = out / "prune.yaml"
    cfg.write_text((work / "parity.yaml").read_text() +
                   f"prune:\n  method: random\n  seed: {PRUNE_SEED}\n  heads_fraction: {HEADS_FRACTION}\n"
                   f"  iterations: 1\n  importance_batches: 1\n")

    checks = parity.Checks()
    sliced, _ = prune(strand, cfg, base, out / "sliced", 0)
    tuned, round_report = prune(strand, cfg, base, out / "tuned", FINETUNE_STEPS)
    kept = ref.kept_heads(tuned)
    checks.expect(kept == ref.kept_heads(sliced) == round_report["kept_heads"],
                  "both prune runs keep the same heads, as their report says")
    n_head = ref.shape_of(ref.load_checkpoint(tuned)[0]).n_head
    removed = check_pattern(checks, kept, n_head)

    export(strand, base, out / "hf_base")
    hf_config = export(strand, sliced, out / "hf_sliced")
    want = {str(i): r for i, r in enumerate(removed) if r}
    checks.expect(hf_config.get("pruned_heads") == want, f"config.json pruned_heads is {want}")
    check_transformers_prunes_alike(checks, out / "hf_base", out / "hf_sliced", hf_config.get("pruned_heads", {}))
    export(strand, tuned, out / "hf_tuned")
    check_tuned(checks, strand, cfg, tuned, out / "hf_tuned", kept, val_bin)
    if checks.failures:
        print(f"parity: {len(checks.failures)} check(s) failed; files kept in {out}")
        return 1
    print("parity: a pruned export loads in transformers and computes strand's logits")
    return 0


if __name__ == "__main__":
    sys.exit(main())
