"""Prefill and batch-1 decode speed of llama.cpp on a GGUF file: the peer of
`crates/lm/examples/bench.rs` for `benches/decode_side_by_side.sh`.

llama.cpp is what most people run a GGUF with on a CPU; it computes with the
file's quantized weights directly (and quantizes activations to 8 bits for
its 4-bit matmuls). Driven through llama-cpp-python's completion API and timed
by llama.cpp's own counters (`llama_perf_context`, what llama-bench reports):
  prefill: a 128-token prompt of ids drawn from 10..1000 (one new token
           generated), prompt-evaluation tokens/s, median of 4 after a warm-up;
  decode:  after a 16-token prompt, N greedy tokens (end-of-sequence banned
           so that every run decodes N), evaluation tokens/s, median of 3.
(llama-cpp-python 0.3.36's low-level `eval` crashes on this build; the
completion path is what its users call anyway.)

Usage: python benches/peers/llama_cpp_peer.py MODEL.gguf [--threads T] [--decode-steps N]
Prints one JSON line.
"""

import argparse
import json
import random
import statistics
import time

import numpy as np
import llama_cpp
from llama_cpp import Llama, LogitsProcessorList


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--decode-steps", type=int, default=64)
    a = ap.parse_args()
    t0 = time.perf_counter()
    llm = Llama(
        model_path=a.model,
        n_ctx=512,
        n_batch=512,
        n_threads=a.threads,
        n_threads_batch=a.threads,
        logits_all=False,
        verbose=False,
    )
    load_s = time.perf_counter() - t0
    rng = random.Random(0)
    ids = lambda n: [rng.randrange(10, 1000) for _ in range(n)]

    ctx = llm._ctx.ctx
    eos = llm.token_eos()

    def ban_eos(_ids, logits):
        logits[eos] = -np.inf
        return logits

    def run(prompt, n_new):
        llm.reset()
        llama_cpp.llama_perf_context_reset(ctx)
        llm.create_completion(
            prompt,
            max_tokens=n_new,
            temperature=0.0,
            logits_processor=LogitsProcessorList([ban_eos]),
        )
        return llama_cpp.llama_perf_context(ctx)

    run(ids(128), 1)
    prefill = []
    for _ in range(4):
        p = run(ids(128), 1)
        prefill.append(p.n_p_eval / (p.t_p_eval_ms / 1000.0))
    decode = []
    for _ in range(3):
        p = run(ids(16), a.decode_steps + 1)
        decode.append(p.n_eval / (p.t_eval_ms / 1000.0))

    print(
        json.dumps(
            {
                "engine": f"llama.cpp (llama-cpp-python {llama_cpp.__version__})",
                "threads": a.threads,
                "load_s": round(load_s, 2),
                "prefill_tok_s": round(statistics.median(prefill), 1),
                "decode_b1_tok_s": round(statistics.median(decode), 1),
            }
        )
    )


if __name__ == "__main__":
    main()
