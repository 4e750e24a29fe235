"""Prefill and batch-1 decode speed of llama.cpp on a GGUF file: the peer of
`crates/lm/examples/bench.rs` for `benches/decode_side_by_side.sh`.

llama.cpp is what most people run a GGUF with on a CPU; it computes with the
file's quantized weights directly (and quantizes activations to 8 bits for
its 4-bit matmuls). Driven through llama-cpp-python's low-level `eval`, the
same work our side times:
  prefill: one evaluation of 128 token ids (after a warm-up), median of 4;
  decode:  after a 16-token prompt, N single-token evaluations, each token
           the argmax of the previous logits (greedy), median of 3 runs.
Token ids are drawn from 10..1000 with a fixed seed, as on our side.

Usage: python benches/peers/llama_cpp_peer.py MODEL.gguf [--threads T] [--decode-steps N]
Prints one JSON line.
"""

import argparse
import json
import random
import statistics
import time

import numpy as np
from llama_cpp import Llama


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

    llm.reset()
    llm.eval(ids(128))
    prefill = []
    for _ in range(4):
        llm.reset()
        toks = ids(128)
        s = time.perf_counter()
        llm.eval(toks)
        prefill.append(128 / (time.perf_counter() - s))

    decode = []
    for _ in range(3):
        llm.reset()
        llm.eval(ids(16))
        nxt = int(np.argmax(llm.scores[llm.n_tokens - 1]))
        s = time.perf_counter()
        for _ in range(a.decode_steps):
            llm.eval([nxt])
            nxt = int(np.argmax(llm.scores[llm.n_tokens - 1]))
        decode.append(a.decode_steps / (time.perf_counter() - s))

    import llama_cpp

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
