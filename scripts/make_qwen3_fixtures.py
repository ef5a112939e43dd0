#!/usr/bin/env python3
"""Makes the tiny random Qwen3 fixtures of tests/fixtures/qwen3/ and their
HF transformers float64 reference dumps (tests/test_qwen3.c).

Qwen3 is Qwen2 without the q/k/v biases and with an RMSNorm over each head
of q and of k (q_norm / k_norm, weights of head_dim) between the projection
and RoPE; its head_dim is a key of its own (qwen3.attention.key_length,
128 in every released Qwen3, whatever hidden/heads is), so the fixture
uses a head_dim that is NOT hidden/heads (40 against 96/4 = 24).

Written as llama.cpp's convert_hf_to_gguf.py writes Qwen3 (architecture
"qwen3", key_length/value_length, attn_q_norm/attn_k_norm tensors, q/k not
permuted: NeoX RoPE), once in F32 and once with every matrix in Q8_0
(gguf-py's quantizer); the reference is every canonical activation of
DESIGN.md for a 7-token prompt plus prompt.tokens, gen.tokens (10 greedy
tokens of HF generate with its KV cache) and gen.logits, as
make_qwen2_fixtures.py writes them. Everything HF computes in float32
whatever the dtype (RMSNorm, RoPE angles, eager softmax) is patched to
float64 the same way, and checked afterwards against numpy.

    pip install torch transformers gguf numpy safetensors
    python3 scripts/make_qwen3_fixtures.py [OUTDIR]   # default tests/fixtures/qwen3
"""
import json
import os
import sys

import numpy as np
import torch
import gguf
import safetensors.numpy
import transformers
from transformers import Qwen3Config, Qwen3ForCausalLM
from transformers.models.qwen3 import modeling_qwen3 as m3

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_qwen2_fixtures as q2  # noqa: E402  (float64 patches, generate, margins)

# name, hidden D, layers, heads H, kv heads KV, head_dim Dh (!= D/H), ffn F,
# vocab V, context, tied, seed, embedding std, gain of the other matrices.
# D, H*Dh and F are multiples of 32 (Q8_0 rows) and of nothing larger.
CONFIGS = [
    dict(name="qwen3-gqa", hidden=96, layers=2, heads=4, kv=2, head_dim=40, ff=224, vocab=512, ctx=64, tied=True,
         seed=24, emb=0.5, gain=1.5),
]
ROPE_THETA = 1000000.0
RMS_EPS = 1e-6
N_PROMPT = 7

m3.Qwen3RMSNorm.forward = q2.rmsnorm_f64
m3.Qwen3RotaryEmbedding.forward = q2.rotary_f64
m3.eager_attention_forward = q2.eager_f64  # repeat_kv is the same function in both modules


def make_model(c):
    cfg = Qwen3Config(
        vocab_size=c["vocab"], hidden_size=c["hidden"], intermediate_size=c["ff"], head_dim=c["head_dim"],
        num_hidden_layers=c["layers"], num_attention_heads=c["heads"], num_key_value_heads=c["kv"],
        max_position_embeddings=c["ctx"], rms_norm_eps=RMS_EPS, rope_theta=ROPE_THETA,
        tie_word_embeddings=c["tied"], hidden_act="silu", attention_bias=False, use_sliding_window=False,
        attn_implementation="eager", torch_dtype="float64",
    )
    cfg.rope_parameters = {"rope_type": "default", "rope_theta": ROPE_THETA}
    torch.manual_seed(c["seed"])
    model = Qwen3ForCausalLM(cfg).to(torch.float64).eval()
    g = torch.Generator().manual_seed(c["seed"])
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("embed_tokens.weight"):
                p.copy_(c["emb"] * torch.randn(p.shape, generator=g))
            elif name.endswith("norm.weight"):  # also q_norm / k_norm: uneven gains per head dimension
                p.copy_(1.0 + 0.3 * torch.randn(p.shape, generator=g))
            elif name == "lm_head.weight":
                p.copy_(3.0 / np.sqrt(p.shape[1]) * torch.randn(p.shape, generator=g))
            elif name.endswith(".weight"):
                p.copy_(c["gain"] * torch.randn(p.shape, generator=g) / np.sqrt(p.shape[1]))
            else:
                raise SystemExit(f"unexpected parameter {name}")
    assert model.model.layers[0].self_attn.head_dim == c["head_dim"]
    assert model.model.layers[0].self_attn.q_proj.bias is None
    return model


def capture(model, c, prompt):
    """Runs the prompt and returns {canonical name: float64 numpy array}."""
    H, KV, Dh = c["heads"], c["kv"], c["head_dim"]
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
            a.q_norm.register_forward_hook(out_hook(p + "q_norm", (n, H, Dh))),
            a.k_norm.register_forward_hook(out_hook(p + "k_norm", (n, KV, Dh))),
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

    # RoPE and the scores, recomputed with HF's apply_rotary_pos_emb from the
    # hooked NORMED q/k (what HF rotates); kq holds -inf where masked
    cos = torch.from_numpy(acts.pop("cos"))[None]
    sin = torch.from_numpy(acts.pop("sin"))[None]
    group = H // KV
    mask = np.triu(np.ones((n, n), dtype=bool), 1)
    for L in range(c["layers"]):
        p = f"blk.{L}."
        q = torch.from_numpy(acts[p + "q_norm"]).transpose(0, 1)[None]  # [1, H, n, Dh]
        k = torch.from_numpy(acts[p + "k_norm"]).transpose(0, 1)[None]  # [1, KV, n, Dh]
        qr, kr = m3.apply_rotary_pos_emb(q, k, cos, sin)
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
        err = np.abs(kqv - acts[p + "kqv"]).max() / np.abs(kqv).max()
        assert err < 1e-12, f"{p}kqv: recomputed attention differs from HF's by {err:g}"
    return acts


def check_f64(model, c, acts):
    """numpy float64 recomputations of the norms and RoPE: no f32 step left"""
    sd = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    Dh = c["head_dim"]

    def rms(x, w):
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + RMS_EPS) * w

    def rel(a, b):
        return np.abs(a - b).max() / np.abs(b).max()

    x = acts["embd"]
    for L in range(c["layers"]):
        p, hp = f"blk.{L}.", f"model.layers.{L}."
        assert rel(acts[p + "attn_norm"], rms(x, sd[hp + "input_layernorm.weight"])) < 1e-12, "rmsnorm not f64"
        assert rel(acts[p + "q_norm"], rms(acts[p + "q"], sd[hp + "self_attn.q_norm.weight"])) < 1e-12, "q_norm"
        assert rel(acts[p + "k_norm"], rms(acts[p + "k"], sd[hp + "self_attn.k_norm.weight"])) < 1e-12, "k_norm"
        n = x.shape[0]
        th = np.arange(n)[:, None] * ROPE_THETA ** (-np.arange(0, Dh, 2) / Dh)
        cs, sn = np.cos(th)[:, None, :], np.sin(th)[:, None, :]
        q, h = acts[p + "q_norm"], Dh // 2
        qr = np.concatenate([q[..., :h] * cs - q[..., h:] * sn, q[..., :h] * sn + q[..., h:] * cs], -1)
        assert rel(acts[p + "q_rope"], qr) < 1e-12, "rope not f64 / not NeoX halves"
        x = acts[p + "out"]
    assert rel(acts["out_norm"], rms(x, sd["model.norm.weight"])) < 1e-12


def write_gguf(model, c, path, qtype):
    sd = {k: v.detach().numpy().astype(np.float32) for k, v in model.state_dict().items()}
    w = gguf.GGUFWriter(path, "qwen3")
    w.add_name(c["name"])
    w.add_block_count(c["layers"])
    w.add_context_length(c["ctx"])
    w.add_embedding_length(c["hidden"])
    w.add_feed_forward_length(c["ff"])
    w.add_head_count(c["heads"])
    w.add_head_count_kv(c["kv"])
    w.add_key_length(c["head_dim"])
    w.add_value_length(c["head_dim"])
    w.add_rope_freq_base(ROPE_THETA)
    w.add_layer_norm_rms_eps(RMS_EPS)
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
        for x in "qkv":
            add(p + f"attn_{x}.weight", sd[hp + f"self_attn.{x}_proj.weight"])
        add(p + "attn_q_norm.weight", sd[hp + "self_attn.q_norm.weight"])
        add(p + "attn_k_norm.weight", sd[hp + "self_attn.k_norm.weight"])
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


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures",
                                                             "qwen3")
    os.makedirs(out, exist_ok=True)
    torch.set_num_threads(2)
    for c in CONFIGS:
        model = make_model(c)
        rng = np.random.default_rng(c["seed"])
        prompt = [int(t) for t in rng.integers(1, c["vocab"], N_PROMPT)]
        acts = capture(model, c, prompt)
        check_f64(model, c, acts)
        gen, gen_logits = q2.generate(model, prompt)
        assert np.abs(gen_logits[0] - acts["logits"][-1]).max() < 1e-6 * np.abs(gen_logits[0]).max()
        dump = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in acts.items()}
        dump["prompt.tokens"] = np.array(prompt, dtype=np.int32)
        dump["gen.tokens"] = gen
        dump["gen.logits"] = gen_logits.astype(np.float32)
        meta = {
            "source": "scripts/make_qwen3_fixtures.py: HF transformers Qwen3ForCausalLM, eager attention, float64",
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
