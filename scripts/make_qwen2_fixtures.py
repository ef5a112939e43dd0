#!/usr/bin/env python3
"""Makes the tiny random Qwen2 fixtures of tests/fixtures/qwen2/ and their
HF transformers float64 reference dumps.

For each configuration below: a Qwen2ForCausalLM with seeded random weights,
written as GGUF the way llama.cpp's convert_hf_to_gguf.py writes Qwen2
(architecture "qwen2", its key and tensor names, q/k NOT permuted: Qwen2
uses NeoX rotate-halves RoPE, so HF's q_proj/k_proj rows are already in the
order llama.cpp's ROPE_TYPE_NEOX expects), once in F32 and once with every
matrix in Q8_0 (quantized by gguf-py, llama.cpp's reference quantizer);
and a safetensors dump (F32) of every canonical activation of DESIGN.md for
a 7-token prompt, plus prompt.tokens, gen.tokens (10 greedy tokens from HF
generate with its KV cache) and gen.logits (the logits that chose them).

The reference runs in float64 end to end. HF's Qwen2 code computes three
things in float32 whatever the model dtype: RMSNorm (casts to float32),
the RoPE angles (inv_freq and cos/sin in float32), and the eager softmax
(dtype=torch.float32). Those are patched below to stay in float64, and
the script asserts afterwards that they did (independent float64 numpy
recomputation within 1e-12), so the dump is a float64 reference stored
in F32, not a float32 one.

No tokenizer goes into the fixtures (the vocabulary is 512 ids): tests use
token ids. The real Qwen2 vocabulary is exercised with the real model
(scripts/fetch_qwen.sh).

    pip install torch transformers gguf numpy safetensors
    python3 scripts/make_qwen2_fixtures.py [OUTDIR]   # default tests/fixtures/qwen2

A second mode makes the same kind of reference for any Qwen2 GGUF, e.g. a
real quantized model: every tensor is dequantized by gguf-py (llama.cpp's
reference dequantizers) into a float64 HF model, so the dump checks the
engine's quantized kernels and its forward pass in one go:

    python3 scripts/make_qwen2_fixtures.py --from-gguf MODEL.gguf --tokens 1,2,3 \
        --out REF.safetensors [--gen N]

A third makes qwen2-gqa-mxfp4.gguf (every matrix MXFP4, gguf >= 0.17) and its
reference on the dequantized weights (tests/test_qwen2_mxfp4.c):

    python3 scripts/make_qwen2_fixtures.py --mxfp4 [OUTDIR]
"""
import json
import os
import sys

import numpy as np
import torch
import gguf
import safetensors.numpy
import transformers
from transformers import Qwen2Config, Qwen2ForCausalLM
from transformers.models.qwen2 import modeling_qwen2 as mq

# name, hidden D, layers, heads H, kv heads KV, ffn F, vocab V, context,
# tied output, seed, std of the embedding, gain of the other matrices.
# emb/gain/seed were picked so that greedy decoding does not just repeat
# one token (a tied random model tends to copy its input): the KV cache is
# then tested with varied inputs. The script asserts >= 5 distinct tokens.
CONFIGS = [
    # GQA 3:1, tied output (as Qwen2.5-0.5B/1.5B): head_dim 16
    dict(name="qwen2-gqa", hidden=96, layers=2, heads=6, kv=2, ff=160, vocab=512, ctx=64, tied=True, seed=13,
         emb=0.5, gain=1.5),
    # MQA (one kv head), separate output.weight (as Qwen2.5-7B): head_dim 16
    dict(name="qwen2-mqa", hidden=64, layers=2, heads=4, kv=1, ff=128, vocab=512, ctx=64, tied=False, seed=17,
         emb=1.0, gain=1.0),
]
ROPE_THETA = 1000000.0  # Qwen2.5's
RMS_EPS = 1e-6
N_PROMPT = 7
N_GEN = 10
# A greedy token whose logit beats the runner-up by less than this (times
# max|logit|) could flip under f32 rounding: such a fixture is rejected.
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
    k = mq.repeat_kv(key, module.num_key_value_groups)
    v = mq.repeat_kv(value, module.num_key_value_groups)
    w = torch.matmul(query, k.transpose(2, 3)) * scaling
    if attention_mask is not None:
        if attention_mask.dtype == torch.bool:
            w = w.masked_fill(~attention_mask, float("-inf"))
        else:
            w = w + attention_mask
    w = torch.softmax(w, dim=-1)
    out = torch.matmul(w, v).transpose(1, 2).contiguous()
    return out, w


mq.Qwen2RMSNorm.forward = rmsnorm_f64
mq.Qwen2RotaryEmbedding.forward = rotary_f64
mq.eager_attention_forward = eager_f64


# ---------------------------------------------------------------- model

def make_model(c):
    cfg = Qwen2Config(
        vocab_size=c["vocab"], hidden_size=c["hidden"], intermediate_size=c["ff"],
        num_hidden_layers=c["layers"], num_attention_heads=c["heads"], num_key_value_heads=c["kv"],
        max_position_embeddings=c["ctx"], rms_norm_eps=RMS_EPS, rope_theta=ROPE_THETA,
        tie_word_embeddings=c["tied"], hidden_act="silu", use_sliding_window=False,
        attn_implementation="eager", torch_dtype="float64",
    )
    cfg.rope_parameters = {"rope_type": "default", "rope_theta": ROPE_THETA}
    torch.manual_seed(c["seed"])
    model = Qwen2ForCausalLM(cfg).to(torch.float64).eval()
    # HF's init (std 0.02, zero biases, unit norms) gives near-uniform
    # logits and exercises no bias or gamma: draw weights at the scale of a
    # trained model instead (unit-variance outputs per layer, real biases,
    # uneven norm gains), so every term of the forward pass matters.
    g = torch.Generator().manual_seed(c["seed"])
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("embed_tokens.weight"):
                p.copy_(c["emb"] * torch.randn(p.shape, generator=g))
            elif name.endswith("norm.weight"):
                p.copy_(1.0 + 0.3 * torch.randn(p.shape, generator=g))
            elif name.endswith(".bias"):
                p.copy_(0.5 * torch.randn(p.shape, generator=g))
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
    """Runs the prompt and returns {canonical name: float64 numpy array}."""
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

    # RoPE and the attention scores happen inside the attention forward:
    # recompute them with HF's own apply_rotary_pos_emb from the hooked
    # q/k and cos/sin. kq holds -inf where the causal mask hides a key,
    # as the engine stores it.
    cos = torch.from_numpy(acts.pop("cos"))[None]
    sin = torch.from_numpy(acts.pop("sin"))[None]
    group = H // KV
    mask = np.triu(np.ones((n, n), dtype=bool), 1)
    for L in range(c["layers"]):
        p = f"blk.{L}."
        q = torch.from_numpy(acts[p + "q"]).transpose(0, 1)[None]  # [1, H, n, Dh]
        k = torch.from_numpy(acts[p + "k"]).transpose(0, 1)[None]  # [1, KV, n, Dh]
        qr, kr = mq.apply_rotary_pos_emb(q, k, cos, sin)
        qr, kr = qr[0].numpy(), kr[0].numpy()
        acts[p + "q_rope"] = qr.transpose(1, 0, 2).copy()
        acts[p + "k_rope"] = kr.transpose(1, 0, 2).copy()
        kq = np.einsum("hid,hjd->hij", qr, kr[np.arange(H) // group]) / np.sqrt(Dh)
        kq[:, mask] = -np.inf
        acts[p + "kq"] = kq
        e = np.exp(kq - kq.max(-1, keepdims=True))
        sm = e / e.sum(-1, keepdims=True)
        acts[p + "kq_soft"] = sm
        v = acts[p + "v"].transpose(1, 0, 2)[np.arange(H) // group]  # [H, n, Dh]
        kqv = np.einsum("hij,hjd->ihd", sm, v).reshape(n, H * Dh)
        # the recomputed attention must be what HF fed o_proj
        err = np.abs(kqv - acts[p + "kqv"]).max() / np.abs(kqv).max()
        assert err < 1e-12, f"{p}kqv: recomputed attention differs from HF's by {err:g}"
    return acts


def check_f64(model, c, acts):
    """Independent float64 numpy checks that the patched HF code did not
    fall back to float32 anywhere (an f32 step leaves ~1e-7 errors)."""
    sd = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    H, D = c["heads"], c["hidden"]
    Dh = D // H

    def rms(x, w):
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + RMS_EPS) * w

    def rel(a, b):
        return np.abs(a - b).max() / np.abs(b).max()

    x = acts["embd"]
    for L in range(c["layers"]):
        p, hp = f"blk.{L}.", f"model.layers.{L}."
        assert rel(acts[p + "attn_norm"], rms(x, sd[hp + "input_layernorm.weight"])) < 1e-12, "rmsnorm not f64"
        n = x.shape[0]
        pos = np.arange(n)[:, None]
        th = pos * ROPE_THETA ** (-np.arange(0, Dh, 2) / Dh)
        cs, sn = np.cos(th)[:, None, :], np.sin(th)[:, None, :]
        q = acts[p + "q"]
        h = Dh // 2
        qr = np.concatenate([q[..., :h] * cs - q[..., h:] * sn, q[..., :h] * sn + q[..., h:] * cs], -1)
        assert rel(acts[p + "q_rope"], qr) < 1e-12, "rope not f64 / not NeoX halves"
        x = acts[p + "out"]
    assert rel(acts["out_norm"], rms(x, sd["model.norm.weight"])) < 1e-12


def generate(model, prompt):
    with torch.no_grad():
        g = model.generate(torch.tensor([prompt]), max_new_tokens=N_GEN, min_new_tokens=N_GEN, do_sample=False,
                           use_cache=True, return_dict_in_generate=True, output_logits=True,
                           pad_token_id=0, eos_token_id=None)
    toks = g.sequences[0, len(prompt):].numpy().astype(np.int32)
    logits = torch.stack(g.logits)[:, 0].numpy()  # [N_GEN, V]
    assert len(toks) == N_GEN
    assert len(set(toks.tolist())) >= 5, f"greedy output {toks.tolist()} repeats itself: pick another seed"
    for i in range(N_GEN):
        row = np.sort(logits[i])
        margin = (row[-1] - row[-2]) / np.abs(row).max()
        assert margin > MIN_MARGIN, f"generated token {i}: top-2 margin {margin:g} too small for an f32 engine"
        assert toks[i] == logits[i].argmax()
    return toks, logits


# ---------------------------------------------------------------- GGUF

def write_gguf(model, c, path, qtype):
    sd = {k: v.detach().numpy().astype(np.float32) for k, v in model.state_dict().items()}
    w = gguf.GGUFWriter(path, "qwen2")
    w.add_name(c["name"])
    w.add_block_count(c["layers"])
    w.add_context_length(c["ctx"])
    w.add_embedding_length(c["hidden"])
    w.add_feed_forward_length(c["ff"])
    w.add_head_count(c["heads"])
    w.add_head_count_kv(c["kv"])
    w.add_rope_freq_base(ROPE_THETA)
    w.add_layer_norm_rms_eps(RMS_EPS)
    # llama.cpp's LLAMA_FTYPE: 0 ALL_F32, 7 MOSTLY_Q8_0, 38 MOSTLY_MXFP4_MOE
    w.add_file_type({gguf.GGMLQuantizationType.F32: 0, gguf.GGMLQuantizationType.Q8_0: 7,
                     gguf.GGMLQuantizationType.MXFP4: 38}[qtype])

    def add(name, arr):
        # 2-D weights keep HF's [out, in] layout: GGUF's ne[0] is the
        # innermost (in-features) dimension. Vectors stay F32 as llama.cpp
        # keeps them.
        if arr.ndim == 2 and qtype != gguf.GGMLQuantizationType.F32:
            w.add_tensor(name, gguf.quants.quantize(arr, qtype), raw_dtype=qtype)
        else:
            w.add_tensor(name, arr)

    add("token_embd.weight", sd["model.embed_tokens.weight"])
    for L in range(c["layers"]):
        hp, p = f"model.layers.{L}.", f"blk.{L}."
        add(p + "attn_norm.weight", sd[hp + "input_layernorm.weight"])
        for x in "qkv":
            add(p + f"attn_{x}.weight", sd[hp + f"self_attn.{x}_proj.weight"])
            add(p + f"attn_{x}.bias", sd[hp + f"self_attn.{x}_proj.bias"])
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
    """A float64 Qwen2ForCausalLM holding the dequantized weights of a qwen2
    GGUF, and its config as a CONFIGS-like dict."""
    r = gguf.GGUFReader(path)

    def kv(key):
        return r.fields[key].contents()

    if kv("general.architecture") != "qwen2":
        raise SystemExit(f"{path}: architecture {kv('general.architecture')!r}, not qwen2")
    t = {x.name: x for x in r.tensors}
    vocab = int(t["token_embd.weight"].shape[1])  # gguf-py reports ne order: [D, V]
    c = dict(name=kv("general.name") if "general.name" in r.fields else os.path.basename(path),
             hidden=int(kv("qwen2.embedding_length")), layers=int(kv("qwen2.block_count")),
             heads=int(kv("qwen2.attention.head_count")), kv=int(kv("qwen2.attention.head_count_kv")),
             ff=int(kv("qwen2.feed_forward_length")), vocab=vocab, ctx=int(kv("qwen2.context_length")),
             tied="output.weight" not in t)
    theta = float(kv("qwen2.rope.freq_base")) if "qwen2.rope.freq_base" in r.fields else 10000.0
    eps = float(kv("qwen2.attention.layer_norm_rms_epsilon"))
    cfg = Qwen2Config(
        vocab_size=vocab, hidden_size=c["hidden"], intermediate_size=c["ff"], num_hidden_layers=c["layers"],
        num_attention_heads=c["heads"], num_key_value_heads=c["kv"], max_position_embeddings=c["ctx"],
        rms_norm_eps=eps, rope_theta=theta, tie_word_embeddings=c["tied"], hidden_act="silu",
        use_sliding_window=False, attn_implementation="eager", torch_dtype="float64")
    cfg.rope_parameters = {"rope_type": "default", "rope_theta": theta}
    with torch.device("meta"):
        model = Qwen2ForCausalLM(cfg)
    names = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight"}
    if not c["tied"]:
        names["lm_head.weight"] = "output.weight"
    for L in range(c["layers"]):
        hp, p = f"model.layers.{L}.", f"blk.{L}."
        names[hp + "input_layernorm.weight"] = p + "attn_norm.weight"
        names[hp + "post_attention_layernorm.weight"] = p + "ffn_norm.weight"
        for x in "qkv":
            names[hp + f"self_attn.{x}_proj.weight"] = p + f"attn_{x}.weight"
            names[hp + f"self_attn.{x}_proj.bias"] = p + f"attn_{x}.bias"
        names[hp + "self_attn.o_proj.weight"] = p + "attn_output.weight"
        names[hp + "mlp.gate_proj.weight"] = p + "ffn_gate.weight"
        names[hp + "mlp.up_proj.weight"] = p + "ffn_up.weight"
        names[hp + "mlp.down_proj.weight"] = p + "ffn_down.weight"
    sd = {}
    for hf, gg in names.items():
        x = t[gg]
        a = gguf.quants.dequantize(x.data, x.tensor_type)
        shape = [int(d) for d in reversed(x.shape)]
        sd[hf] = torch.from_numpy(np.asarray(a, dtype=np.float64).reshape(shape))
    model.load_state_dict(sd, strict=False, assign=True)
    if c["tied"]:
        model.tie_weights()
    # buffers (rotary inv_freq) live on meta after the meta construction: rebuild them
    model.model.rotary_emb = mq.Qwen2RotaryEmbedding(cfg)
    for n_, p_ in list(model.named_parameters()) + list(model.named_buffers()):
        assert p_.device.type != "meta", f"{n_} was not loaded"
    return model.eval(), c


def main_from_gguf(argv):
    import argparse
    ap = argparse.ArgumentParser()
    ap.add_argument("--from-gguf", required=True)
    ap.add_argument("--tokens", required=True, help="comma-separated prompt ids")
    ap.add_argument("--out", required=True)
    ap.add_argument("--gen", type=int, default=0, help="greedy tokens to add as gen.tokens")
    a = ap.parse_args(argv)
    torch.set_num_threads(2)
    model, c = model_from_gguf(a.from_gguf)
    prompt = [int(x) for x in a.tokens.split(",")]
    acts = capture(model, c, prompt)
    dump = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in acts.items()}
    dump["prompt.tokens"] = np.array(prompt, dtype=np.int32)
    if a.gen:
        with torch.no_grad():
            g = model.generate(torch.tensor([prompt]), max_new_tokens=a.gen, do_sample=False, use_cache=True,
                               pad_token_id=0)
        dump["gen.tokens"] = g[0, len(prompt):].numpy().astype(np.int32)
        print("gen.tokens", dump["gen.tokens"].tolist())
    meta = {"source": f"scripts/make_qwen2_fixtures.py --from-gguf {os.path.basename(a.from_gguf)}: HF "
                      "Qwen2ForCausalLM on gguf-py dequantized weights, eager attention, float64",
            "transformers": transformers.__version__, "torch": torch.__version__, "config": json.dumps(c)}
    safetensors.numpy.save_file(dump, a.out, metadata=meta)
    os.chmod(a.out, 0o644)
    print(f"{a.out}: {len(dump)} tensors")


def main_mxfp4(argv):
    """qwen2-gqa with every matrix in MXFP4 (gguf-py's quantizer, ggml's
    quantize_row_mxfp4_ref) and its reference: HF float64 on the weights
    gguf-py dequantizes from that file, so the dump judges the MXFP4 kernels
    and the pass, not the quantization error (as the Q8_0 file is judged
    against its dequantized copy). gen.logits and the margin checks as for
    the main fixtures."""
    out = argv[0] if argv else os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "qwen2")
    torch.set_num_threads(2)
    c = CONFIGS[0]
    base = os.path.join(out, c["name"] + "-mxfp4")
    write_gguf(make_model(c), c, base + ".gguf", gguf.GGMLQuantizationType.MXFP4)
    model, c2 = model_from_gguf(base + ".gguf")
    rng = np.random.default_rng(c["seed"])
    prompt = [int(t) for t in rng.integers(1, c["vocab"], N_PROMPT)]
    acts = capture(model, c2, prompt)
    gen, gen_logits = generate(model, prompt)
    dump = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in acts.items()}
    dump["prompt.tokens"] = np.array(prompt, dtype=np.int32)
    dump["gen.tokens"] = gen
    dump["gen.logits"] = gen_logits.astype(np.float32)
    meta = {"source": "scripts/make_qwen2_fixtures.py --mxfp4: HF Qwen2ForCausalLM on the gguf-py dequantized "
                      "weights of " + os.path.basename(base) + ".gguf, eager attention, float64",
            "transformers": transformers.__version__, "torch": torch.__version__, "config": json.dumps(c2)}
    safetensors.numpy.save_file(dump, base + ".ref.safetensors", metadata=meta)
    os.chmod(base + ".ref.safetensors", 0o644)
    print(f"{c['name']} MXFP4: prompt {prompt} -> gen {gen.tolist()}; {len(acts)} tensors")


def main():
    if any(x.startswith("--from-gguf") for x in sys.argv[1:]):
        return main_from_gguf(sys.argv[1:])
    if sys.argv[1:2] == ["--mxfp4"]:
        return main_mxfp4(sys.argv[2:])
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures",
                                                             "qwen2")
    os.makedirs(out, exist_ok=True)
    for c in CONFIGS:
        model = make_model(c)
        rng = np.random.default_rng(c["seed"])
        prompt = [int(t) for t in rng.integers(1, c["vocab"], N_PROMPT)]
        acts = capture(model, c, prompt)
        check_f64(model, c, acts)
        gen, gen_logits = generate(model, prompt)
        # the cached decode must agree with the full-prompt pass on the first
        # token (generate hands out its logits cast to float32)
        assert np.abs(gen_logits[0] - acts["logits"][-1]).max() < 1e-6 * np.abs(gen_logits[0]).max()
        # C order: safetensors.numpy writes an array's memory as it lies, so a
        # non-contiguous einsum result would be stored transposed
        dump = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in acts.items()}
        dump["prompt.tokens"] = np.array(prompt, dtype=np.int32)
        dump["gen.tokens"] = gen
        dump["gen.logits"] = gen_logits.astype(np.float32)
        meta = {
            "source": "scripts/make_qwen2_fixtures.py: HF transformers Qwen2ForCausalLM, eager attention, float64",
            "transformers": transformers.__version__, "torch": torch.__version__,
            "config": json.dumps(c), "rope_theta": str(ROPE_THETA), "rms_norm_eps": str(RMS_EPS),
        }
        base = os.path.join(out, c["name"])
        safetensors.numpy.save_file(dump, base + ".ref.safetensors", metadata=meta)
        os.chmod(base + ".ref.safetensors", 0o644)  # save_file creates it 0600
        write_gguf(model, c, base + "-f32.gguf", gguf.GGMLQuantizationType.F32)
        write_gguf(model, c, base + "-q8_0.gguf", gguf.GGMLQuantizationType.Q8_0)
        print(f"{c['name']}: prompt {prompt} -> gen {gen.tolist()}; {len(acts)} tensors")
        for f in (base + "-f32.gguf", base + "-q8_0.gguf", base + ".ref.safetensors"):
            print(f"  {os.path.basename(f)}: {os.path.getsize(f)} bytes")


if __name__ == "__main__":
    main()
