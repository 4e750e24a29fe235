"""Reference outputs from Hugging Face `transformers` and `gguf` for the
parity tests in parity.rs.

Usage: python parity.py MODE OUT_DIR [ARGS...]; everything is written to
OUT_DIR/ref.safetensors (plus model files for `gpt2`).

Modes:
  gguf MODEL.gguf PROMPTS_JSON STRINGS_JSON
      Loads the GGUF with transformers' own GGUF loader (a version-1 file is
      first rewritten as version 3 with gguf-py, which cannot read v1), then
      stores token ids and logits for each prompt and token ids for each
      tokenizer test string.
  gpt2 PROMPTS_JSON STRINGS_JSON
      Creates a tiny random GPT-2 (a byte-level BPE tokenizer trained on a
      few sentences, config.json, model.safetensors, tokenizer.json) in
      OUT_DIR/model and stores reference ids/logits as for `gguf`.
  dequant
      Random blocks of each quantised type with reference dequantisation by
      gguf-py.

Needs: pip install transformers gguf safetensors (torch and numpy are in the
project's venv).
"""

import json
import os
import struct
import sys

import numpy as np


def save(out_dir, tensors):
    from safetensors.numpy import save_file

    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, os.path.join(out_dir, "ref.safetensors"))


def read_gguf_v1(path):
    """Minimal GGUF v1 reader: metadata (key -> (type, value)) and tensors
    (name -> (ggml dims, type id, raw bytes))."""
    data = open(path, "rb").read()
    pos = 0

    def take(fmt):
        nonlocal pos
        vals = struct.unpack_from("<" + fmt, data, pos)
        pos += struct.calcsize("<" + fmt)
        return vals[0] if len(vals) == 1 else vals

    def string():
        nonlocal pos
        n = take("I")
        s = data[pos : pos + n].decode("utf-8", errors="replace")
        pos += n
        return s

    scalar = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}

    def value(t):
        if t in scalar:
            return take(scalar[t])
        if t == 8:
            return string()
        if t == 9:
            it = take("I")
            n = take("I")
            return (it, [value(it) for _ in range(n)])
        raise ValueError(f"type {t}")

    assert data[:4] == b"GGUF"
    pos = 4
    version = take("I")
    assert version == 1, version
    n_tensors = take("I")
    n_kv = take("I")
    meta = {}
    for _ in range(n_kv):
        k = string()
        t = take("I")
        meta[k] = (t, value(t))
    infos = []
    for _ in range(n_tensors):
        name = string()
        nd = take("I")
        dims = [take("I") for _ in range(nd)]
        ty = take("I")
        off = take("Q")
        infos.append((name, dims, ty, off))
    align = 32
    start = (pos + align - 1) // align * align
    tensors = {}
    for name, dims, ty, off in infos:
        assert ty == 0, "only F32 v1 files are supported here"
        n = int(np.prod(dims))
        arr = np.frombuffer(data, dtype=np.float32, count=n, offset=start + off)
        tensors[name] = arr.reshape(list(reversed(dims))).copy()
    return meta, tensors


def rewrite_v1_as_v3(src, dst):
    import gguf

    meta, tensors = read_gguf_v1(src)
    arch = meta["general.architecture"][1]
    w = gguf.GGUFWriter(dst, arch)
    for k, (t, v) in meta.items():
        if k == "general.architecture":
            continue
        vt = gguf.GGUFValueType(t)
        if vt == gguf.GGUFValueType.ARRAY:
            sub, items = v
            w.add_key_value(k, items, vt, sub_type=gguf.GGUFValueType(sub))
        else:
            w.add_key_value(k, v, vt)
    for name, arr in tensors.items():
        w.add_tensor(name, arr)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def reference(model, tok, prompts, strings, add_special):
    import torch

    out = {}
    for i, p in enumerate(prompts):
        ids = tok(p, add_special_tokens=add_special)["input_ids"]
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0].float().numpy()
        out[f"ids_{i}"] = np.array(ids, dtype=np.int64)
        out[f"logits_{i}"] = logits.astype(np.float32)
    for j, s in enumerate(strings):
        out[f"tok_{j}"] = np.array(tok(s, add_special_tokens=False)["input_ids"], dtype=np.int64)
    return out


def mode_gguf(out_dir, model_path, prompts, strings):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    with open(model_path, "rb") as f:
        head = f.read(8)
    if struct.unpack_from("<I", head, 4)[0] == 1:
        v3 = os.path.join(out_dir, "model_v3.gguf")
        rewrite_v1_as_v3(model_path, v3)
        model_path = v3
    d, name = os.path.split(os.path.abspath(model_path))
    tok = AutoTokenizer.from_pretrained(d, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=name, torch_dtype=torch.float32)
    model.eval()
    save(out_dir, reference(model, tok, prompts, strings, add_special=True))


def mode_gpt2(out_dir, prompts, strings):
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(1234)
    model_dir = os.path.join(out_dir, "model")
    os.makedirs(model_dir, exist_ok=True)
    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    tk.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    corpus = [
        "The quick brown fox jumps over the lazy dog.",
        "Once upon a time there was a little girl named Lily.",
        "She loved to play outside in the park with her ball.",
        "Numbers like 12345 and 3.14159 appear in text too.",
    ] * 20
    tk.train_from_iterator(corpus, trainer)
    tk.save(os.path.join(model_dir, "tokenizer.json"))
    vocab = tk.get_vocab_size()
    eos = tk.token_to_id("<|endoftext|>")
    cfg = GPT2Config(
        vocab_size=vocab,
        n_positions=64,
        n_embd=48,
        n_layer=3,
        n_head=4,
        bos_token_id=eos,
        eos_token_id=eos,
        attn_implementation="eager",
    )
    model = GPT2LMHeadModel(cfg)
    # Random init is small; scale up so the logits are not nearly uniform.
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                p.mul_(4.0)
    model.eval()
    model.save_pretrained(model_dir, safe_serialization=True)

    class Tok:
        def __call__(self, text, add_special_tokens=False):
            return {"input_ids": tk.encode(text, add_special_tokens=add_special_tokens).ids}

    save(out_dir, reference(model, Tok(), prompts, strings, add_special=False))


def mode_dequant(out_dir):
    import gguf

    rng = np.random.default_rng(7)
    # f16 scale fields per type (byte offsets in the block) to keep values finite.
    scales = {
        "Q4_0": [0], "Q4_1": [0, 2], "Q5_0": [0], "Q5_1": [0, 2], "Q8_0": [0],
        "Q2_K": [80, 82], "Q3_K": [108], "Q4_K": [0, 2], "Q5_K": [0, 2], "Q6_K": [208],
    }
    out = {}
    for name, offs in scales.items():
        qt = gguf.GGMLQuantizationType[name]
        block, size = gguf.GGML_QUANT_SIZES[qt]
        nblocks = 8
        raw = rng.integers(0, 256, size=(nblocks, size), dtype=np.uint8)
        for o in offs:
            s = rng.uniform(-1, 1, size=nblocks).astype(np.float16).view(np.uint8).reshape(nblocks, 2)
            raw[:, o : o + 2] = s
        ref = gguf.quants.dequantize(raw.reshape(-1), qt).astype(np.float32).reshape(-1)
        out[f"raw_{name}"] = raw.reshape(-1)
        out[f"ref_{name}"] = ref
    save(out_dir, out)


def main():
    mode, out_dir = sys.argv[1], sys.argv[2]
    if mode == "gguf":
        mode_gguf(out_dir, sys.argv[3], json.loads(sys.argv[4]), json.loads(sys.argv[5]))
    elif mode == "gpt2":
        mode_gpt2(out_dir, json.loads(sys.argv[3]), json.loads(sys.argv[4]))
    elif mode == "dequant":
        mode_dequant(out_dir)
    else:
        raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
