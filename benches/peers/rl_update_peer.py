"""One RL update of an `llm-erm`-shaped agent (or, with --module reft, an
`llm-reft`-shaped one) in plain PyTorch + Hugging Face
transformers: the peer of `agents/llm/examples/update_time.rs` for
`benches/llm_update_side_by_side.sh`.

The update (CleanRL-style, one file):
  1. the ERM reads the prompts' hidden states at 2/3 depth of the frozen
     model (one no-grad forward over the left-padded prompts);
  2. emotion: a per-emotion tanh MLP over 20 context features (sigmoid
     outputs) and the ERM (tanh encoder, attention pooling, GRU cell,
     six sigmoid heads) -> a logit bias (emotions @ [6, hidden] directions
     through the frozen unembedding scaled to unit RMS / hidden, plus
     cautious/exploratory token-set gains) and a temperature
     (base * exp(w . emotions), clamped), applied as a logits processor;
  3. k samples per prompt, `max_new_tokens` each, with the KV cache
     (`model.generate`, multinomial sampling, no top-k/top-p, stop on EOS),
     the raw logits of every step kept (`output_logits=True`);
  4. reward: the stand-in the Rust side also uses with `--stand-in-reward`
     (fraction of response token ids divisible by 7), RLOO advantages;
  5. per micro-batch: policy log-probs = log_softmax(processor(raw) / T)
     with gradients into the modulators (the emotion is a detached input,
     as on the Rust side), reference = log_softmax(raw / T) of
     the frozen model, loss = -A * ratio + kl_coef * KL(pi || ref) per token
     (exact over the vocabulary), sequence means; global grad-norm clip;
     AdamW.
  With --recompute, step 5 instead recomputes the raw logits with two full
  forwards over prompt + response per micro-batch (frozen reference with
  the ERM read-out, then the policy), the way most RLHF code does it.

Weights of the modules are seeded here, not copied from the Rust side, and
the context features are a fixed stand-in: the computation has the same
shapes and cost, not the same numbers.

With --module reft, the modules are the encoder and llm-reft's rank-4
interventions on the outputs of blocks n-4 and n-1 at response positions
(forward hooks; active while sampling and in the policy forward of step 5,
which then always recomputes: the reference is the frozen forward without
them). The emotion is then a detached input too, as on the Rust side.

Usage: python benches/peers/rl_update_peer.py --prompts P.json --model M.gguf
       [--updates N] [--threads T] [--recompute] [--module erm|reft]
Prints one line per update and a last line of JSON with the median
(first, warm-up update excluded when there are more than one).
"""

import argparse
import json
import os
import statistics
import struct
import sys
import tempfile
import time


def load_model(path, tmp):
    import torch
    from transformers import AutoModelForCausalLM

    with open(path, "rb") as f:
        head = f.read(8)
    if struct.unpack_from("<I", head, 4)[0] == 1:
        # GGUF v1 (stories260K): transformers reads v2+, so rewrite it with
        # the helper the crates/lm parity test uses.
        sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "crates", "lm", "tests"))
        from parity import rewrite_v1_as_v3

        v3 = os.path.join(tmp, "model_v3.gguf")
        rewrite_v1_as_v3(path, v3)
        path = v3
    d, name = os.path.split(os.path.abspath(path))
    m = AutoModelForCausalLM.from_pretrained(d, gguf_file=name, dtype=torch.float32, attn_implementation="sdpa")
    m.eval()
    for p in m.parameters():
        p.requires_grad_(False)
    return m


def build_modules(torch, hidden, vocab, n_layers, unembedding, seed=0):
    nn = torch.nn
    torch.manual_seed(seed)
    width, n_erm, n_emo, n_feat = 32, 6, 4, 20
    n_cond = n_emo + 2

    class Encoder(nn.Module):
        """One small tanh MLP per emotion over the context features."""

        def __init__(self):
            super().__init__()
            self.mlps = nn.ModuleList(
                nn.Sequential(nn.Linear(n_feat, 16), nn.Tanh(), nn.Linear(16, 1)) for _ in range(n_emo)
            )

        def forward(self, feats):
            phasic = torch.sigmoid(torch.cat([m(feats) for m in self.mlps], 1))
            tonic = torch.zeros(feats.shape[0], 2)  # turn 0: no tonic state yet
            return torch.cat([phasic, tonic], 1)

    class Erm(nn.Module):
        def __init__(self):
            super().__init__()
            self.readout = (2 * n_layers + 2) // 3
            self.encoder = nn.Linear(hidden, width)
            self.attention = nn.Linear(width, 1)
            self.gru = nn.GRUCell(width + n_cond, width)
            self.heads = nn.Linear(2 * width, n_erm)
            self.direction = nn.Parameter(torch.zeros(n_erm, hidden))
            w = unembedding.detach().float()
            self.register_buffer("unembedding_t", (w / (w.square().mean().sqrt() * hidden)).t().contiguous())
            self.gains = nn.Parameter(torch.zeros(2))
            self.temp_w = nn.Parameter(torch.zeros(n_erm))
            g = torch.Generator().manual_seed(seed + 1)
            self.register_buffer("cautious", (torch.rand(vocab, generator=g) < 0.001).float())
            self.register_buffer("exploratory", (torch.rand(vocab, generator=g) < 0.001).float())

        def forward(self, h, mask, cond):
            z = torch.tanh(self.encoder(h))
            s = self.attention(z).squeeze(-1).masked_fill(mask == 0, -1e9)
            pooled = (z * torch.softmax(s, -1).unsqueeze(-1)).sum(1)
            tonic = self.gru(torch.cat([pooled, cond], 1), torch.zeros(h.shape[0], width))
            return torch.sigmoid(self.heads(torch.cat([pooled, tonic], 1)))

        def bias_and_temperature(self, e):
            fearish = 0.5 * (e[:, 0] + e[:, 4]) * self.gains[0]
            curious = 0.5 * (e[:, 1] + e[:, 5]) * self.gains[1]
            bias = (e @ self.direction) @ self.unembedding_t + fearish[:, None] * self.cautious + curious[:, None] * self.exploratory
            temp = torch.clamp(torch.exp(e @ self.temp_w), 0.5, 2.0)
            return bias, temp

    return Encoder(), Erm()


def build_reft(torch, model, n_layers, hidden, rank=4, n_cond=6, seed=0):
    """`llm-reft`'s interventions: at blocks n-4 and n-1, on response
    positions, h' = h + (h W + b + e U - h P) P^T (P orthonormal at start,
    W = P, b = U = 0). Forward hooks on the decoder layers; `state` holds the
    conditioning `e` ([rows, n_cond]) and the first response position."""
    nn = torch.nn
    torch.manual_seed(seed)
    state = {"e": None, "start": 0}

    class Intervention(nn.Module):
        def __init__(self):
            super().__init__()
            q, _ = torch.linalg.qr(torch.randn(hidden, rank))
            self.p = nn.Parameter(q.contiguous())
            self.w = nn.Parameter(q.clone())
            self.b = nn.Parameter(torch.zeros(rank))
            self.u = nn.Parameter(torch.zeros(n_cond, rank))

        def edit(self, h):
            t = h.shape[1]
            # Positions of h: the whole sequence at the prefill/learning
            # forward, one new (response) token at a decode step.
            first = state["start"] if t > 1 else 0
            if first >= t:
                return h
            r = h[:, first:]
            val = r @ self.w + self.b + (state["e"] @ self.u)[:, None]
            r = r + (val - r @ self.p) @ self.p.t()
            return torch.cat([h[:, :first], r], 1)

    mods = nn.ModuleList(Intervention() for _ in range(2))
    layers = [n_layers - 4, n_layers - 1]

    def hook(i):
        def f(_module, _inp, out):
            if state["e"] is None:
                return out
            if isinstance(out, tuple):
                return (mods[i].edit(out[0]),) + tuple(out[1:])
            return mods[i].edit(out)

        return f

    for i, li in enumerate(layers):
        model.model.layers[li].register_forward_hook(hook(i))
    return mods, state


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--prompts", required=True, help="JSON written by update_time --dump-prompts")
    ap.add_argument("--model", required=True)
    ap.add_argument("--updates", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--recompute", action="store_true")
    ap.add_argument(
        "--module",
        choices=["erm", "reft"],
        default="erm",
        help="erm: llm-erm's logit-side modules; reft: llm-reft's low-rank "
        "interventions on hidden states (always the recompute path)",
    )
    args = ap.parse_args()
    if args.module == "reft":
        args.recompute = True

    import torch

    torch.set_num_threads(args.threads)
    cfg = json.load(open(args.prompts))
    k, max_new, temperature = cfg["samples_per_prompt"], cfg["max_new_tokens"], cfg["temperature"]
    kl_coef, grad_clip, micro = cfg["kl_coef"], cfg["grad_clip"], cfg["microbatch"]

    with tempfile.TemporaryDirectory() as tmp:
        model = load_model(args.model, tmp)
    mc = model.config
    encoder, erm = build_modules(
        torch, mc.hidden_size, mc.vocab_size, mc.num_hidden_layers, model.get_output_embeddings().weight
    )
    reft, reft_state = None, None
    if args.module == "reft":
        reft, reft_state = build_reft(torch, model, mc.num_hidden_layers, mc.hidden_size)
        params = [p for p in list(encoder.parameters()) + list(reft.parameters())]
    else:
        params = [p for p in list(encoder.parameters()) + list(erm.parameters()) if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg["lr"], weight_decay=0.0)
    pad = mc.pad_token_id if mc.pad_token_id is not None else 0
    eos = model.generation_config.eos_token_id
    stops = set(eos if isinstance(eos, list) else [eos]) if eos is not None else set()

    def left_pad(seqs):
        n = max(len(s) for s in seqs)
        toks = torch.full((len(seqs), n), pad, dtype=torch.long)
        mask = torch.zeros((len(seqs), n), dtype=torch.long)
        for i, s in enumerate(seqs):
            toks[i, n - len(s) :] = torch.tensor(s)
            mask[i, n - len(s) :] = 1
        return toks, mask

    def positions(mask):
        return (mask.cumsum(-1) - 1).clamp(min=0)

    def emotion_of(hidden, mask, feats):
        cond = encoder(feats)
        return erm(hidden, mask, cond)

    class ErmProcessor:
        def __init__(self, bias, temp):
            self.bias, self.temp = bias, temp

        def __call__(self, input_ids, scores):
            return (scores + self.bias) / self.temp[:, None]

    def update(u):
        t0 = time.perf_counter()
        prompts = cfg["updates"][u % len(cfg["updates"])]
        n_p = len(prompts)
        feats = torch.linspace(0, 1, n_p * 20).view(n_p, 20)
        p_tok, p_mask = left_pad(prompts)
        with torch.no_grad():
            out = model(p_tok, attention_mask=p_mask, position_ids=positions(p_mask), output_hidden_states=True)
            hidden = out.hidden_states[erm.readout]
            del out
            if reft is not None:
                # The encoder's conditioning; no logit-side module.
                cond = encoder(feats).repeat_interleave(k, 0)
                bias, temp = torch.zeros(1, mc.vocab_size), torch.ones(n_p * k)
                reft_state.update(e=cond, start=p_tok.shape[1])
            else:
                e = emotion_of(hidden, p_mask, feats)
                bias, temp = erm.bias_and_temperature(e.repeat_interleave(k, 0))
            g = model.generate(
                input_ids=p_tok.repeat_interleave(k, 0),
                attention_mask=p_mask.repeat_interleave(k, 0),
                do_sample=True,
                temperature=temperature,
                top_k=0,
                top_p=1.0,
                max_new_tokens=max_new,
                logits_processor=[ErmProcessor(bias, temp)],
                output_logits=True,
                return_dict_in_generate=True,
                pad_token_id=pad,
            )
            if reft_state is not None:
                reft_state["e"] = None
        lp = p_tok.shape[1]
        new = g.sequences[:, lp:]
        raw_all = torch.stack(g.logits, 1)  # [b*k, steps, V], before the processor
        t_gen = time.perf_counter()
        b = new.shape[0]
        lens = []
        for row in new.tolist():
            n = len(row)
            for i, t in enumerate(row):
                if t in stops:
                    n = i + 1
                    break
            lens.append(n)
        rewards = torch.tensor(
            [sum(1 for t in row[:n] if t % 7 == 0) / max(n, 1) for row, n in zip(new.tolist(), lens)]
        )
        r = rewards.view(n_p, k)
        adv = (r - (r.sum(1, keepdim=True) - r) / (k - 1)).view(-1)

        opt.zero_grad()
        chunk = max(1, -(-micro // k))
        kl_tot, tok_tot, loss_tot = 0.0, 0.0, 0.0
        for p0 in range(0, n_p, chunk):
            p1 = min(p0 + chunk, n_p)
            rows = slice(p0 * k, p1 * k)
            lr = max(lens[rows])
            resp = torch.zeros(p1 * k - p0 * k, lr)
            for j, n in enumerate(lens[rows]):
                resp[j, :n] = 1
            targets = new[rows, :lr]
            if args.recompute:
                toks = torch.cat([p_tok.repeat_interleave(k, 0)[rows], targets], 1)
                mask = torch.cat([p_mask.repeat_interleave(k, 0)[rows], resp.long()], 1)
                with torch.no_grad():
                    out = model(toks, attention_mask=mask, position_ids=positions(mask), output_hidden_states=True)
                    raw_ref = out.logits[:, lp - 1 : lp - 1 + lr]
                    h = out.hidden_states[erm.readout][::k, :lp]
                    del out
                if reft is not None:
                    cond = encoder(feats[p0:p1]).detach().repeat_interleave(k, 0)
                    reft_state.update(e=cond, start=lp)
                pol = model(toks, attention_mask=mask, position_ids=positions(mask)).logits[:, lp - 1 : lp - 1 + lr]
                if reft is not None:
                    reft_state["e"] = None
                h_mask = p_mask[p0:p1]
            else:
                raw_ref = raw_all[rows, :lr]
                pol = raw_ref
                h, h_mask = hidden[p0:p1], p_mask[p0:p1]
            if reft is not None:
                bias, temp = torch.zeros(1, mc.vocab_size), torch.ones(pol.shape[0])
            else:
                e = emotion_of(h, h_mask, feats[p0:p1]).detach().repeat_interleave(k, 0)
                bias, temp = erm.bias_and_temperature(e)
            logp = torch.log_softmax((pol + bias[:, None]) / temp[:, None, None] / temperature, -1)
            with torch.no_grad():
                ref = torch.log_softmax(raw_ref / temperature, -1)
            tok_lp = logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
            probs = logp.exp()
            kl = (probs * (logp - ref)).sum(-1)
            ratio = torch.exp(tok_lp - tok_lp.detach())
            per_tok = -ratio * adv[rows, None] + kl_coef * kl
            loss = ((per_tok * resp).sum(1) / resp.sum(1).clamp(min=1)).sum() / b
            loss.backward()
            kl_tot += float((kl.detach() * resp).sum())
            tok_tot += float(resp.sum())
            loss_tot += float(loss.detach())
        gn = torch.nn.utils.clip_grad_norm_(params, grad_clip)
        opt.step()
        t1 = time.perf_counter()
        print(
            f"update {u + 1}: {t1 - t0:.2f} s (sampling {t_gen - t0:.2f}, learning {t1 - t_gen:.2f}), "
            f"reward {float(rewards.mean()):.3f}, kl {kl_tot / max(tok_tot, 1):.5f}, loss {loss_tot:.4f}, "
            f"grad {float(gn):.4f}, tokens {sum(lens) / b:.1f}",
            flush=True,
        )
        return t1 - t0

    times = [update(u) for u in range(args.updates)]
    timed = times[1:] if len(times) > 1 else times
    print(
        json.dumps(
            {
                "engine": "pytorch+transformers",
                "module": args.module,
                "recompute": args.recompute,
                "threads": torch.get_num_threads(),
                "median_s": statistics.median(timed),
                "times_s": times,
            }
        )
    )


if __name__ == "__main__":
    main()
