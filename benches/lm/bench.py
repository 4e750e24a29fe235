"""Throughput of emorl-lm against Hugging Face transformers on the same model.

Measures prefill tokens/s (one 128-token forward, batch 1) and greedy decode
tokens/s with a KV cache (32 steps after a 16-token prefill, batch 1 and 8),
in f32 on the CPU with the same number of torch threads, plus each process's
peak resident memory, our bf16 option's speed, and how far bf16 logits are
from f32 logits.

Usage (from the repository root, after `source scripts/env.sh`):
    python benches/lm/bench.py [MODEL.gguf] [--profile release|dev]

Defaults to the SmolLM2-135M-Instruct GGUF in the emorl cache. Needs
transformers, gguf and accelerate in the venv for the reference side.
"""

import json
import os
import statistics
import subprocess
import sys
import time


def default_model():
    if os.environ.get("EMORL_SMOLLM2"):
        return os.environ["EMORL_SMOLLM2"]
    cache = os.environ.get("EMORL_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "emorl"
    )
    return os.path.join(cache, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")


def run_child(cmd):
    """Runs `cmd`; returns (stdout, peak resident memory of that process in MiB)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed with {proc.returncode}")
    return out, usage.ru_maxrss / 1024


def run_ours(model, profile, extra=()):
    build = ["cargo", "build", "-q", "-p", "emorl-lm", "--example", "bench"]
    if profile == "release":
        build.insert(2, "--release")
    subprocess.run(build, check=True)
    target = os.environ.get("CARGO_TARGET_DIR", "target")
    exe = os.path.join(target, "release" if profile == "release" else "debug", "examples", "bench")
    out, peak = run_child([exe, model, *extra])
    res = json.loads(out.strip().splitlines()[-1])
    res["peak_mib"] = round(peak)
    if not extra:
        res["engine"] = "emorl-lm f32"
    elif "--bf16" in extra:
        res["engine"] = "emorl-lm bf16"
    return res


def run_hf(model, threads):
    import torch
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(threads)
    d, name = os.path.split(os.path.abspath(model))
    t0 = time.perf_counter()
    m = AutoModelForCausalLM.from_pretrained(d, gguf_file=name, dtype=torch.float32, attn_implementation="sdpa")
    m.eval()
    load_s = time.perf_counter() - t0
    vocab = m.config.vocab_size
    g = torch.Generator().manual_seed(0)

    def toks(b, n):
        return torch.randint(10, min(vocab, 1000), (b, n), generator=g)

    res = {"engine": "transformers", "threads": threads, "load_s": round(load_s, 2)}
    with torch.no_grad():
        m(toks(1, 128))  # warm-up
        rates = []
        for _ in range(4):
            t = toks(1, 128)
            s = time.perf_counter()
            m(t)
            rates.append(128 / (time.perf_counter() - s))
        res["prefill_tok_s"] = round(statistics.median(rates), 1)
        for b in (1, 8):
            rates = []
            for _ in range(3):
                out = m(toks(b, 16), use_cache=True)
                past = out.past_key_values
                nxt = out.logits[:, -1].argmax(-1, keepdim=True)
                s = time.perf_counter()
                for _ in range(32):
                    out = m(nxt, past_key_values=past, use_cache=True)
                    past = out.past_key_values
                    nxt = out.logits[:, -1].argmax(-1, keepdim=True)
                rates.append(b * 32 / (time.perf_counter() - s))
            res[f"decode_b{b}_tok_s"] = round(statistics.median(rates), 1)
    import resource

    res["peak_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    res["engine"] = "transformers f32"
    return res


def main():
    args = [a for a in sys.argv[1:]]
    profile = "release"
    if "--profile" in args:
        i = args.index("--profile")
        profile = args[i + 1]
        del args[i : i + 2]
    model = args[0] if args else default_model()
    ours = run_ours(model, profile)
    ours_bf16 = run_ours(model, profile, ("--bf16",))
    diff = run_ours(model, profile, ("--logit-diff",))
    hf = run_hf(model, ours["threads"])
    keys = ["load_s", "prefill_tok_s", "decode_b1_tok_s", "decode_b8_tok_s", "peak_mib"]
    print(f"model: {model}, torch threads: {ours['threads']}")
    print(f"{'':18}" + "".join(f"{k:>17}" for k in keys))
    for r in (ours, ours_bf16, hf):
        print(f"{r['engine']:18}" + "".join(f"{r[k]:>17}" for k in keys))
    for k in keys[1:4]:
        print(f"ratio {k} (emorl-lm f32 / transformers): {ours[k] / hf[k]:.2f}x")
    print(
        f"bf16 vs f32 logits: relative L2 {diff['bf16_vs_f32_rel_l2']}, "
        f"argmax agreement {diff['argmax_agreement']} over {diff['positions']} positions"
    )


if __name__ == "__main__":
    main()
