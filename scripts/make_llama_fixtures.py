#!/usr/bin/env python3
"""Makes the tiny random llama fixtures of tests/fixtures/llama/ and their
HF transformers float64 reference dumps.

For each configuration below: a LlamaForCausalLM with seeded random weights
(no biases, RMSNorm, SwiGLU, GQA 3:1), written as GGUF the way llama.cpp's
convert_hf_to_gguf.py writes llama (architecture "llama", its key and tensor
names), once in F32 and once with every matrix in Q8_0 (gguf-py's quantizer,
llama.cpp's reference).

The q/k permutation. HF's llama rotates the halves of each head
(rotate_half: element i pairs with i + head_dim/2). llama.cpp's llama uses
its NORMAL RoPE, which rotates adjacent pairs (2i, 2i+1), and its converter
permutes the rows of q_proj and k_proj per head so that the two agree: row
i of a head moves to 2i and row i + head_dim/2 to 2i + 1 (permute() below,
as convert_hf_to_gguf.py's LlamaModel.permute, with head_count_kv heads for
k). The GGUF holds the permuted rows, and so the canonical tensors q, k,
q_rope and k_rope of the dump are in the GGUF's order too: HF's q_proj
output permuted the same way, which is what the engine computes from the
file. kq, kqv and everything after are unchanged by the permutation (the
same permutation of q and k leaves their dot products as they are).
check_f64() recomputes q_rope from the permuted q with adjacent pairs in
numpy, so a wrong permutation or pairing fails here, not in the C test.

The reference runs in float64 end to end: HF's llama computes RMSNorm, the
RoPE angles and the eager softmax in float32 whatever the model dtype; those
are patched to float64 below, and check_f64 asserts within 1e-12 that they
did. A safetensors dump (F32) of every canonical activation of DESIGN.md for
a 7-token prompt, plus prompt.tokens, gen.tokens (10 greedy tokens from HF
generate with its KV cache) and gen.logits (the logits that chose them).

    pip install torch transformers gguf numpy safetensors
    python3 scripts/make_llama_fixtures.py [OUTDIR]   # default tests/fixtures/llama

A second mode makes the same kind of reference for any llama GGUF, e.g. the
real SmolLM2 (scripts/fetch_models.sh): every tensor is dequantized by gguf-py
into a float64 HF model (q/k rows un-permuted back to HF's order), so the
dump checks the engine's quantized kernels and its forward pass in one go:

    python3 scripts/make_llama_fixtures.py --from-gguf MODEL.gguf --tokens 1,2,3 \\
        --out REF.safetensors [--gen N]
"""
import json
import os
import sys

import numpy as np
import torch
import gguf
import safetensors.numpy
import transformers
from transformers import LlamaConfig, LlamaForCausalLM
from transformers.models.llama import modeling_llama as ml

# name, hidden D, layers, heads H, kv heads KV, ffn F, vocab V, context,
# tied output, seed, std of the embedding, gain of the other matrices.
# Shapes are small and no tile multiple (D 96, F 224 or 160: multiples of 32
# only, as Q8_0 blocks need). The script asserts >= 5 distinct greedy tokens.
CONFIGS = [
    # GQA 3:1, separate output.weight (as Llama 2/3): head_dim 16
    dict(name="llama-gqa", hidden=96, layers=2, heads=6, kv=2, ff=224, vocab=384, ctx=64, tied=False, seed=24,
         emb=1.0, gain=1.2),
    # GQA 3:1, tied output (as SmolLM2): head_dim 32
    dict(name="llama-tied", hidden=96, layers=2, heads=3, kv=1, ff=160, vocab=320, ctx=64, tied=True, seed=29,
         emb=0.5, gain=1.5),
]
ROPE_THETA = 100000.0  # SmolLM2's
RMS_EPS = 1e-5
N_PROMPT = 7
N_GEN = 10
MIN_MARGIN = 1e-3

torch.set_default_dtype(torch.float64)


# ---------------------------------------------------------------- float64 patches

def rmsnorm_f64(self, x):
    var = x.pow(2).mean(-1, keepdim=True)
    return self.weight * (x * torch.rsqrt(var + self.variance_epsilon))


def rotary_f64(self, x, position_ids):
    dim = self.inv_freq.shape[0] * 2
    base = self.config.rope_parameters["rope_theta"]
    inv = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim))
    freqs = position_ids[..., None].to(torch.float64) * inv
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos().to(x.dtype), emb.sin().to(x.dtype)


def eager_f64(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
    k = ml.repeat_kv(key, module.num_key_value_groups)
    v = ml.repeat_kv(value, module.num_key_value_groups)
    w = torch.matmul(query, k.transpose(2, 3)) * scaling
    if attention_mask is not None:
        if attention_mask.dtype == torch.bool:
            w = w.masked_fill(~attention_mask, float("-inf"))
        else:
            w = w + attention_mask
    w = torch.softmax(w, dim=-1)
    out = torch.matmul(w, v).transpose(1, 2).contiguous()
    return out, w


ml.LlamaRMSNorm.forward = rmsnorm_f64
ml.LlamaRotaryEmbedding.forward = rotary_f64
ml.eager_attention_forward = eager_f64


# ---------------------------------------------------------------- q/k permutation

def permute(w, n_head):
    """HF rows -> GGUF rows (llama.cpp's convert): per head, row i -> 2i and
    row i + half -> 2i + 1. Works on [rows, ...] weights."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def unpermute(w, n_head):
    """GGUF rows -> HF rows: the inverse of permute."""
    return w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def permute_act(a):
    """An activation [n, heads, Dh] in HF order -> GGUF order: element i of a
    head to 2i, element i + half to 2i + 1."""
    h = a.shape[-1] // 2
    out = np.empty_like(a)
    out[..., 0::2] = a[..., :h]
    out[..., 1::2] = a[..., h:]
    return out


# ---------------------------------------------------------------- model

def hf_config(c, eps, theta):
    cfg = LlamaConfig(
        vocab_size=c["vocab"], hidden_size=c["hidden"], intermediate_size=c["ff"],
        num_hidden_layers=c["layers"], num_attention_heads=c["heads"], num_key_value_heads=c["kv"],
        max_position_embeddings=c["ctx"], rms_norm_eps=eps, rope_theta=theta, tie_word_embeddings=c["tied"],
        hidden_act="silu", attention_bias=False, mlp_bias=False, attn_implementation="eager",
        torch_dtype="float64")
    cfg.rope_parameters = {"rope_type": "default", "rope_theta": theta}
    return cfg


def make_model(c):
    torch.manual_seed(c["seed"])
    model = LlamaForCausalLM(hf_config(c, RMS_EPS, ROPE_THETA)).to(torch.float64).eval()
    # weights at the scale of a trained model (unit-variance outputs per
    # layer, uneven norm gains), so every term of the forward pass matters
    g = torch.Generator().manual_seed(c["seed"])
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("embed_tokens.weight"):
                p.copy_(c["emb"] * torch.randn(p.shape, generator=g))
            elif name.endswith("norm.weight"):
                p.copy_(1.0 + 0.3 * torch.randn(p.shape, generator=g))
            elif name == "lm_head.weight":
                p.copy_(3.0 / np.sqrt(p.shape[1]) * torch.randn(p.shape, generator=g))
            elif name.endswith(".weight"):
                p.copy_(c["gain"] * torch.randn(p.shape, generator=g) / np.sqrt(p.shape[1]))
            else:
                raise SystemExit(f"unexpected parameter {name}")
    if c["tied"]:
        assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr(), "not tied"
    return model


# ---------------------------------------------------------------- reference

def capture(model, c, prompt):
    """Runs the prompt; returns {canonical name: float64 array}, q/k/q_rope/
    k_rope in the GGUF's (permuted) order."""
    H, KV, D = c["heads"], c["kv"], c["hidden"]
    Dh = D // H
    n = len(prompt)
    acts, hooks = {}, []

    def out_hook(name, shape=None):
        def f(mod, inp, out):
            t = out[0] if isinstance(out, tuple) else out
            t = t.detach()[0]
            acts[name] = t.reshape(shape).numpy().copy() if shape else t.numpy().copy()
        return f

    def in_hook(name):
        def f(mod, inp):
            acts[name] = inp[0].detach()[0].numpy().copy()
        return f

    m = model.model
    hooks.append(m.embed_tokens.register_forward_hook(out_hook("embd")))
    hooks.append(m.rotary_emb.register_forward_hook(
        lambda mod, inp, out: acts.update(cos=out[0].detach()[0].numpy().copy(), sin=out[1].detach()[0].numpy().copy())))
    for L, layer in enumerate(m.layers):
        p = f"blk.{L}."
        a = layer.self_attn
        hooks += [
            layer.input_layernorm.register_forward_hook(out_hook(p + "attn_norm")),
            a.q_proj.register_forward_hook(out_hook(p + "q", (n, H, Dh))),
            a.k_proj.register_forward_hook(out_hook(p + "k", (n, KV, Dh))),
            a.v_proj.register_forward_hook(out_hook(p + "v", (n, KV, Dh))),
            a.o_proj.register_forward_pre_hook(in_hook(p + "kqv")),
            a.o_proj.register_forward_hook(out_hook(p + "attn_out")),
            layer.post_attention_layernorm.register_forward_pre_hook(in_hook(p + "ffn_inp")),
            layer.post_attention_layernorm.register_forward_hook(out_hook(p + "ffn_norm")),
            layer.mlp.gate_proj.register_forward_hook(out_hook(p + "ffn_gate")),
            layer.mlp.up_proj.register_forward_hook(out_hook(p + "ffn_up")),
            layer.mlp.down_proj.register_forward_pre_hook(in_hook(p + "ffn_act")),
            layer.mlp.down_proj.register_forward_hook(out_hook(p + "ffn_out")),
            layer.register_forward_hook(out_hook(p + "out")),
        ]
    hooks.append(m.norm.register_forward_hook(out_hook("out_norm")))
    hooks.append(model.lm_head.register_forward_hook(out_hook("logits")))
    with torch.no_grad():
        out = model(torch.tensor([prompt]), use_cache=False)
    for h in hooks:
        h.remove()
    assert np.array_equal(acts["logits"], out.logits[0].numpy())

    # RoPE and the scores happen inside the attention forward: recompute
    # them with HF's own apply_rotary_pos_emb (in HF's order), then store
    # q, k, q_rope, k_rope in the GGUF's order
    cos = torch.from_numpy(acts.pop("cos"))[None]
    sin = torch.from_numpy(acts.pop("sin"))[None]
    group = H // KV
    mask = np.triu(np.ones((n, n), dtype=bool), 1)
    for L in range(c["layers"]):
        p = f"blk.{L}."
        q = torch.from_numpy(acts[p + "q"]).transpose(0, 1)[None]  # [1, H, n, Dh]
        k = torch.from_numpy(acts[p + "k"]).transpose(0, 1)[None]  # [1, KV, n, Dh]
        qr, kr = ml.apply_rotary_pos_emb(q, k, cos, sin)
        qr, kr = qr[0].numpy(), kr[0].numpy()
        kq = np.einsum("hid,hjd->hij", qr, kr[np.arange(H) // group]) / np.sqrt(Dh)
        kq[:, mask] = -np.inf
        acts[p + "kq"] = kq
        e = np.exp(kq - kq.max(-1, keepdims=True))
        sm = e / e.sum(-1, keepdims=True)
        acts[p + "kq_soft"] = sm
        v = acts[p + "v"].transpose(1, 0, 2)[np.arange(H) // group]  # [H, n, Dh]
        kqv = np.einsum("hij,hjd->ihd", sm, v).reshape(n, H * Dh)
        err = np.abs(kqv - acts[p + "kqv"]).max() / np.abs(kqv).max()
        assert err < 1e-12, f"{p}kqv: recomputed attention differs from HF's by {err:g}"
        acts[p + "q"] = permute_act(acts[p + "q"])
        acts[p + "k"] = permute_act(acts[p + "k"])
        acts[p + "q_rope"] = permute_act(qr.transpose(1, 0, 2))
        acts[p + "k_rope"] = permute_act(kr.transpose(1, 0, 2))
    return acts


def check_f64(model, c, acts, eps, theta):
    """Independent float64 numpy checks: no float32 step, and RoPE in
    llama.cpp's normal mode (adjacent pairs) on the permuted q and k."""
    sd = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    H, D = c["heads"], c["hidden"]
    Dh = D // H

    def rms(x, w):
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * w

    def rel(a, b):
        return np.abs(a - b).max() / np.abs(b).max()

    x = acts["embd"]
    for L in range(c["layers"]):
        p, hp = f"blk.{L}.", f"model.layers.{L}."
        assert rel(acts[p + "attn_norm"], rms(x, sd[hp + "input_layernorm.weight"])) < 1e-12, "rmsnorm not f64"
        # q from the GGUF-order weight: the permutation of the rows is the
        # permutation of q
        wq = permute(sd[hp + "self_attn.q_proj.weight"], H)
        q = (acts[p + "attn_norm"] @ wq.T).reshape(acts[p + "q"].shape)
        assert rel(acts[p + "q"], q) < 1e-12, "q not in the GGUF's order"
        n = x.shape[0]
        th = np.arange(n)[:, None] * theta ** (-np.arange(0, Dh, 2) / Dh)
        cs, sn = np.cos(th)[:, None, :], np.sin(th)[:, None, :]
        qr = np.empty_like(q)
        qr[..., 0::2] = q[..., 0::2] * cs - q[..., 1::2] * sn
        qr[..., 1::2] = q[..., 0::2] * sn + q[..., 1::2] * cs
        assert rel(acts[p + "q_rope"], qr) < 1e-12, "rope not f64 / not adjacent pairs on the GGUF's q"
        x = acts[p + "out"]
    assert rel(acts["out_norm"], rms(x, sd["model.norm.weight"])) < 1e-12


def generate(model, prompt, check=True):
    with torch.no_grad():
        g = model.generate(torch.tensor([prompt]), max_new_tokens=N_GEN, min_new_tokens=N_GEN, do_sample=False,
                           use_cache=True, return_dict_in_generate=True, output_logits=True,
                           pad_token_id=0, eos_token_id=None)
    toks = g.sequences[0, len(prompt):].numpy().astype(np.int32)
    logits = torch.stack(g.logits)[:, 0].numpy()  # [N_GEN, V]
    assert len(toks) == N_GEN
    if check:
        assert len(set(toks.tolist())) >= 5, f"greedy output {toks.tolist()} repeats itself: pick another seed"
    for i in range(N_GEN):
        row = np.sort(logits[i])
        margin = (row[-1] - row[-2]) / np.abs(row).max()
        if check:
            assert margin > MIN_MARGIN, f"generated token {i}: top-2 margin {margin:g} too small for an f32 engine"
        else:
            print(f"  gen {i}: token {toks[i]}, top-2 margin {margin:.3g} x max|logit|")
        assert toks[i] == logits[i].argmax()
    return toks, logits


# ---------------------------------------------------------------- GGUF

def write_gguf(model, c, path, qtype):
    sd = {k: v.detach().numpy().astype(np.float32) for k, v in model.state_dict().items()}
    w = gguf.GGUFWriter(path, "llama")
    w.add_name(c["name"])
    w.add_block_count(c["layers"])
    w.add_context_length(c["ctx"])
    w.add_embedding_length(c["hidden"])
    w.add_feed_forward_length(c["ff"])
    w.add_head_count(c["heads"])
    w.add_head_count_kv(c["kv"])
    w.add_rope_freq_base(ROPE_THETA)
    w.add_layer_norm_rms_eps(RMS_EPS)
    w.add_rope_dimension_count(c["hidden"] // c["heads"])
    w.add_vocab_size(c["vocab"])
    w.add_file_type(0 if qtype == gguf.GGMLQuantizationType.F32 else 7)

    def add(name, arr):
        if arr.ndim == 2 and qtype != gguf.GGMLQuantizationType.F32:
            w.add_tensor(name, gguf.quants.quantize(arr, qtype), raw_dtype=qtype)
        else:
            w.add_tensor(name, arr)

    add("token_embd.weight", sd["model.embed_tokens.weight"])
    for L in range(c["layers"]):
        hp, p = f"model.layers.{L}.", f"blk.{L}."
        add(p + "attn_norm.weight", sd[hp + "input_layernorm.weight"])
        add(p + "attn_q.weight", permute(sd[hp + "self_attn.q_proj.weight"], c["heads"]))
        add(p + "attn_k.weight", permute(sd[hp + "self_attn.k_proj.weight"], c["kv"]))
        add(p + "attn_v.weight", sd[hp + "self_attn.v_proj.weight"])
        add(p + "attn_output.weight", sd[hp + "self_attn.o_proj.weight"])
        add(p + "ffn_norm.weight", sd[hp + "post_attention_layernorm.weight"])
        add(p + "ffn_gate.weight", sd[hp + "mlp.gate_proj.weight"])
        add(p + "ffn_up.weight", sd[hp + "mlp.up_proj.weight"])
        add(p + "ffn_down.weight", sd[hp + "mlp.down_proj.weight"])
    add("output_norm.weight", sd["model.norm.weight"])
    if not c["tied"]:
        add("output.weight", sd["lm_head.weight"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def model_from_gguf(path):
    """A float64 LlamaForCausalLM holding the dequantized weights of a llama
    GGUF (q/k rows un-permuted to HF's order), its config dict, eps, theta."""
    r = gguf.GGUFReader(path)

    def kv(key):
        return r.fields[key].contents()

    if kv("general.architecture") != "llama":
        raise SystemExit(f"{path}: architecture {kv('general.architecture')!r}, not llama")
    t = {x.name: x for x in r.tensors}
    vocab = int(t["token_embd.weight"].shape[1])  # gguf-py reports ne order: [D, V]
    c = dict(name=kv("general.name") if "general.name" in r.fields else os.path.basename(path),
             hidden=int(kv("llama.embedding_length")), layers=int(kv("llama.block_count")),
             heads=int(kv("llama.attention.head_count")), kv=int(kv("llama.attention.head_count_kv")),
             ff=int(kv("llama.feed_forward_length")), vocab=vocab, ctx=int(kv("llama.context_length")),
             tied="output.weight" not in t)
    theta = float(kv("llama.rope.freq_base")) if "llama.rope.freq_base" in r.fields else 10000.0
    eps = float(kv("llama.attention.layer_norm_rms_epsilon"))
    cfg = hf_config(c, eps, theta)
    with torch.device("meta"):
        model = LlamaForCausalLM(cfg)
    names = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight"}
    if not c["tied"]:
        names["lm_head.weight"] = "output.weight"
    perm = {}
    for L in range(c["layers"]):
        hp, p = f"model.layers.{L}.", f"blk.{L}."
        names[hp + "input_layernorm.weight"] = p + "attn_norm.weight"
        names[hp + "post_attention_layernorm.weight"] = p + "ffn_norm.weight"
        for x in "qkv":
            names[hp + f"self_attn.{x}_proj.weight"] = p + f"attn_{x}.weight"
        perm[hp + "self_attn.q_proj.weight"] = c["heads"]
        perm[hp + "self_attn.k_proj.weight"] = c["kv"]
        names[hp + "self_attn.o_proj.weight"] = p + "attn_output.weight"
        names[hp + "mlp.gate_proj.weight"] = p + "ffn_gate.weight"
        names[hp + "mlp.up_proj.weight"] = p + "ffn_up.weight"
        names[hp + "mlp.down_proj.weight"] = p + "ffn_down.weight"
    sd = {}
    for hf, gg in names.items():
        x = t[gg]
        a = gguf.quants.dequantize(x.data, x.tensor_type)
        shape = [int(d) for d in reversed(x.shape)]
        a = np.asarray(a, dtype=np.float64).reshape(shape)
        if hf in perm:
            a = unpermute(a, perm[hf])
        sd[hf] = torch.from_numpy(np.ascontiguousarray(a))
    model.load_state_dict(sd, strict=False, assign=True)
    if c["tied"]:
        model.tie_weights()
    model.model.rotary_emb = ml.LlamaRotaryEmbedding(cfg)
    for n_, p_ in list(model.named_parameters()) + list(model.named_buffers()):
        assert p_.device.type != "meta", f"{n_} was not loaded"
    return model.eval(), c, eps, theta


def main_from_gguf(argv):
    import argparse
    ap = argparse.ArgumentParser()
    ap.add_argument("--from-gguf", required=True)
    ap.add_argument("--tokens", required=True, help="comma-separated prompt ids")
    ap.add_argument("--out", required=True)
    ap.add_argument("--gen", type=int, default=0, help="greedy tokens to add as gen.tokens")
    a = ap.parse_args(argv)
    torch.set_num_threads(2)
    model, c, eps, theta = model_from_gguf(a.from_gguf)
    prompt = [int(x) for x in a.tokens.split(",")]
    acts = capture(model, c, prompt)
    check_f64(model, c, acts, eps, theta)
    dump = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in acts.items()}
    dump["prompt.tokens"] = np.array(prompt, dtype=np.int32)
    if a.gen:
        global N_GEN
        N_GEN = a.gen
        gen, _ = generate(model, prompt, check=False)
        dump["gen.tokens"] = gen
        print("gen.tokens", gen.tolist())
    meta = {"source": f"scripts/make_llama_fixtures.py --from-gguf {os.path.basename(a.from_gguf)}: HF "
                      "LlamaForCausalLM on gguf-py dequantized weights (q/k un-permuted), eager attention, float64",
            "transformers": transformers.__version__, "torch": torch.__version__, "config": json.dumps(c)}
    safetensors.numpy.save_file(dump, a.out, metadata=meta)
    os.chmod(a.out, 0o644)
    print(f"{a.out}: {len(dump)} tensors")


def main():
    if any(x.startswith("--from-gguf") for x in sys.argv[1:]):
        return main_from_gguf(sys.argv[1:])
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures",
                                                             "llama")
    os.makedirs(out, exist_ok=True)
    for c in CONFIGS:
        model = make_model(c)
        rng = np.random.default_rng(c["seed"])
        prompt = [int(t) for t in rng.integers(1, c["vocab"], N_PROMPT)]
        acts = capture(model, c, prompt)
        check_f64(model, c, acts, RMS_EPS, ROPE_THETA)
        gen, gen_logits = generate(model, prompt)
        assert np.abs(gen_logits[0] - acts["logits"][-1]).max() < 1e-6 * np.abs(gen_logits[0]).max()
        dump = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in acts.items()}
        dump["prompt.tokens"] = np.array(prompt, dtype=np.int32)
        dump["gen.tokens"] = gen
        dump["gen.logits"] = gen_logits.astype(np.float32)
        meta = {
            "source": "scripts/make_llama_fixtures.py: HF transformers LlamaForCausalLM, eager attention, float64; "
                      "q/k/q_rope/k_rope in the GGUF's permuted order",
            "transformers": transformers.__version__, "torch": torch.__version__,
            "config": json.dumps(c), "rope_theta": str(ROPE_THETA), "rms_norm_eps": str(RMS_EPS),
        }
        base = os.path.join(out, c["name"])
        safetensors.numpy.save_file(dump, base + ".ref.safetensors", metadata=meta)
        os.chmod(base + ".ref.safetensors", 0o644)
        write_gguf(model, c, base + "-f32.gguf", gguf.GGMLQuantizationType.F32)
        write_gguf(model, c, base + "-q8_0.gguf", gguf.GGMLQuantizationType.Q8_0)
        print(f"{c['name']}: prompt {prompt} -> gen {gen.tolist()}; {len(acts)} tensors")
        for f in (base + "-f32.gguf", base + "-q8_0.gguf", base + ".ref.safetensors"):
            print(f"  {os.path.basename(f)}: {os.path.getsize(f)} bytes")


if __name__ == "__main__":
    main()
