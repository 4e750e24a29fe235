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
  gpt2_gguf PROMPTS_JSON STRINGS_JSON
      As `gpt2`, plus OUT_DIR/model.gguf written the way llama.cpp's
      converter writes GPT-2 (gguf-py writer).
  llama_hf PROMPTS_JSON STRINGS_JSON tied|untied|sharded
      A tiny random LlamaForCausalLM (GQA) saved with save_pretrained in
      OUT_DIR/model (with the same kind of tokenizer.json), the same model
      as OUT_DIR/model.gguf in llama.cpp's layout (q/k permuted), and
      references.
  chat CASES.json
      Renders chat templates with Jinja as transformers does (chat.json).
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


def train_tokenizer(model_dir):
    """A byte-level BPE tokenizer trained on a few sentences, saved as
    model_dir/tokenizer.json."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

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
    return tk


class PlainTok:
    """The reference tokenization: the tokenizers library's own encode."""

    def __init__(self, tk):
        self.tk = tk

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": self.tk.encode(text, add_special_tokens=add_special_tokens).ids}


def save_pretrained(model, model_dir, **kw):
    try:
        model.save_pretrained(model_dir, safe_serialization=True, **kw)
    except TypeError:  # transformers >= 5 always writes safetensors
        model.save_pretrained(model_dir, **kw)


def make_gpt2(out_dir):
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(1234)
    model_dir = os.path.join(out_dir, "model")
    os.makedirs(model_dir, exist_ok=True)
    tk = train_tokenizer(model_dir)
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
    save_pretrained(model, model_dir)
    return model, tk, model_dir


def mode_gpt2(out_dir, prompts, strings):
    model, tk, _ = make_gpt2(out_dir)
    save(out_dir, reference(model, PlainTok(tk), prompts, strings, add_special=False))


def add_bpe_tokenizer(w, tk, model_dir):
    """gpt2-style BPE vocabulary metadata of a tokenizers tokenizer."""
    vocab = tk.get_vocab(with_added_tokens=True)
    by_id = sorted(vocab.items(), key=lambda kv: kv[1])
    assert [i for _, i in by_id] == list(range(len(by_id)))
    special = {t.content for t in tk.get_added_tokens_decoder().values() if t.special}
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("gpt-2")
    w.add_token_list([t for t, _ in by_id])
    w.add_token_types([3 if t in special else 1 for t, _ in by_id])
    merges = json.load(open(os.path.join(model_dir, "tokenizer.json")))["model"]["merges"]
    w.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in merges])
    eos = tk.token_to_id("<|endoftext|>")
    w.add_bos_token_id(eos)
    w.add_eos_token_id(eos)


def write_gpt2_gguf(model, tk, model_dir, path):
    """Writes the model as llama.cpp's converter does for GPT2LMHeadModel:
    `gpt2` architecture, Conv1D weights transposed to [out, in], the head
    tied to token_embd (no `output` tensor), gpt2 BPE vocabulary."""
    import gguf

    cfg = model.config
    w = gguf.GGUFWriter(path, "gpt2")
    w.add_block_count(cfg.n_layer)
    w.add_context_length(cfg.n_positions)
    w.add_embedding_length(cfg.n_embd)
    w.add_feed_forward_length(4 * cfg.n_embd)
    w.add_head_count(cfg.n_head)
    w.add_layer_norm_eps(cfg.layer_norm_epsilon)
    w.add_file_type(0)
    add_bpe_tokenizer(w, tk, model_dir)
    names = {
        "ln_1": "attn_norm",
        "attn.c_attn": "attn_qkv",
        "attn.c_proj": "attn_output",
        "ln_2": "ffn_norm",
        "mlp.c_fc": "ffn_up",
        "mlp.c_proj": "ffn_down",
    }
    for name, t in model.transformer.state_dict().items():
        if name.endswith((".attn.bias", ".attn.masked_bias")):
            continue
        arr = t.detach().float().numpy()
        stem, suffix = name.rsplit(".", 1)
        if stem == "wte":
            new = "token_embd"
        elif stem == "wpe":
            new = "position_embd"
        elif stem == "ln_f":
            new = "output_norm"
        else:
            _, layer, part = stem.split(".", 2)
            new = f"blk.{layer}.{names[part]}"
            if suffix == "weight" and part in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"):
                arr = arr.T
        w.add_tensor(f"{new}.{suffix}", np.ascontiguousarray(arr))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def mode_gpt2_gguf(out_dir, prompts, strings):
    model, tk, model_dir = make_gpt2(out_dir)
    write_gpt2_gguf(model, tk, model_dir, os.path.join(out_dir, "model.gguf"))
    save(out_dir, reference(model, PlainTok(tk), prompts, strings, add_special=False))


def llama_cpp_permute(w, n_head):
    """llama.cpp's converter permutation of q/k rows to the interleaved
    rotary layout GGUF stores."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_llama_gguf(model, tk, model_dir, path):
    """Writes a LlamaForCausalLM as llama.cpp's converter does: `llama`
    architecture, q/k rows permuted, `output` only when untied."""
    import gguf

    cfg = model.config
    theta = getattr(cfg, "rope_theta", None) or cfg.rope_parameters["rope_theta"]
    w = gguf.GGUFWriter(path, "llama")
    w.add_block_count(cfg.num_hidden_layers)
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_rope_freq_base(theta)
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_rope_dimension_count(cfg.hidden_size // cfg.num_attention_heads)
    w.add_file_type(0)
    add_bpe_tokenizer(w, tk, model_dir)
    parts = {
        "input_layernorm": "attn_norm",
        "self_attn.q_proj": "attn_q",
        "self_attn.k_proj": "attn_k",
        "self_attn.v_proj": "attn_v",
        "self_attn.o_proj": "attn_output",
        "post_attention_layernorm": "ffn_norm",
        "mlp.gate_proj": "ffn_gate",
        "mlp.up_proj": "ffn_up",
        "mlp.down_proj": "ffn_down",
    }
    for name, t in model.state_dict().items():
        arr = t.detach().float().numpy()
        if name == "model.embed_tokens.weight":
            new = "token_embd.weight"
        elif name == "model.norm.weight":
            new = "output_norm.weight"
        elif name == "lm_head.weight":
            if cfg.tie_word_embeddings:
                continue
            new = "output.weight"
        else:
            _, _, layer, rest = name.split(".", 3)
            part = rest[: -len(".weight")]
            new = f"blk.{layer}.{parts[part]}.weight"
            if part == "self_attn.q_proj":
                arr = llama_cpp_permute(arr, cfg.num_attention_heads)
            elif part == "self_attn.k_proj":
                arr = llama_cpp_permute(arr, cfg.num_key_value_heads)
        w.add_tensor(new, np.ascontiguousarray(arr))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def mode_llama_hf(out_dir, prompts, strings, variant):
    """A tiny random LlamaForCausalLM (grouped-query attention, non-default
    rope theta and epsilon) saved with save_pretrained and as GGUF; `variant`
    is `tied`, `untied` or `sharded` (untied, many small shards)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(4321)
    model_dir = os.path.join(out_dir, "model")
    os.makedirs(model_dir, exist_ok=True)
    tk = train_tokenizer(model_dir)
    eos = tk.token_to_id("<|endoftext|>")
    cfg = LlamaConfig(
        vocab_size=tk.get_vocab_size(),
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=3,
        num_attention_heads=8,
        num_key_value_heads=2,
        max_position_embeddings=128,
        rope_theta=500.0,
        rms_norm_eps=1e-5,
        tie_word_embeddings=(variant == "tied"),
        bos_token_id=eos,
        eos_token_id=eos,
        attn_implementation="eager",
    )
    model = LlamaForCausalLM(cfg)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                p.mul_(4.0)
            else:
                p.uniform_(0.5, 1.5)
    model.eval()
    if variant == "sharded":
        save_pretrained(model, model_dir, max_shard_size="40KB")
        assert os.path.exists(os.path.join(model_dir, "model.safetensors.index.json"))
    else:
        save_pretrained(model, model_dir)
    write_llama_gguf(model, tk, model_dir, os.path.join(out_dir, "model.gguf"))
    save(out_dir, reference(model, PlainTok(tk), prompts, strings, add_special=False))


def mode_chat(out_dir, cases):
    """Renders each case {template, messages, bos, eos, add_generation_prompt}
    with Jinja as transformers does (trim_blocks, lstrip_blocks); writes the
    texts as JSON to OUT_DIR/chat.json."""
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(msg):
        raise ValueError(msg)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = raise_exception
    out = []
    for c in cases:
        t = env.from_string(c["template"])
        out.append(
            t.render(
                messages=c["messages"],
                bos_token=c["bos"],
                eos_token=c["eos"],
                add_generation_prompt=c["add_generation_prompt"],
            )
        )
    with open(os.path.join(out_dir, "chat.json"), "w") as f:
        json.dump(out, f)


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
    elif mode == "gpt2_gguf":
        mode_gpt2_gguf(out_dir, json.loads(sys.argv[3]), json.loads(sys.argv[4]))
    elif mode == "llama_hf":
        mode_llama_hf(out_dir, json.loads(sys.argv[3]), json.loads(sys.argv[4]), sys.argv[5])
    elif mode == "chat":
        mode_chat(out_dir, json.load(open(sys.argv[3])))
    elif mode == "dequant":
        mode_dequant(out_dir)
    else:
        raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
