"""Throughput of emorl-lm against Hugging Face transformers on the same model.

Measures prefill tokens/s (one 128-token forward, batch 1) and greedy decode
tokens/s with a KV cache (32 steps after a 16-token prefill, batch 1 and 8),
in f32 on the CPU with the same number of torch threads.

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


def run_ours(model, profile):
    cmd = ["cargo", "run", "-q", "-p", "emorl-lm", "--example", "bench"]
    if profile == "release":
        cmd.insert(2, "--release")
    out = subprocess.run(cmd + ["--", model], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


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
    hf = run_hf(model, ours["threads"])
    keys = ["load_s", "prefill_tok_s", "decode_b1_tok_s", "decode_b8_tok_s"]
    print(f"model: {model}, torch threads: {ours['threads']}")
    print(f"{'':18}" + "".join(f"{k:>18}" for k in keys))
    for r in (ours, hf):
        print(f"{r['engine']:18}" + "".join(f"{r[k]:>18}" for k in keys))


if __name__ == "__main__":
    main()
