#!/usr/bin/env python3
"""The fixture of tests/test_patch.c (issue 18): a float64 numpy forward of
models/tiny-shakespeare-gpt2-f16.gguf (GPT-2: LayerNorm, fused qkv, causal
attention, tanh GELU, tied output) on the tour's prompt, once clean and once
with the same write xfdb's `set blk.2.out[3, 0:8] = 0.5` makes (after block
2, before block 3 reads it). Writes tests/fixtures/patch/set_blk2_out.safetensors:
  logits.set    [2, V]  rows 3 and 9 of the logits with the write
  prompt.tokens [10]    I32
Needs: pip install numpy gguf. Run from the repository root."""
import json
import struct
import sys

import numpy as np
from gguf import GGUFReader

MODEL = "models/tiny-shakespeare-gpt2-f16.gguf"
OUT = "tests/fixtures/patch/set_blk2_out.safetensors"
TOKENS = [33676, 4720, 25, 198, 2061, 1657, 832, 331, 8623, 4324]  # "ROMEO:\nWhat light through yonder window"
ROWS = [3, 9]


def load(path):
    r = GGUFReader(path)
    w = {t.name: np.array(t.data, dtype=np.float64) for t in r.tensors}

    def field(k):
        f = r.fields[k]
        return f.parts[f.data[0]][0]

    hp = dict(n_layer=int(field("gpt2.block_count")), n_head=int(field("gpt2.attention.head_count")),
              eps=float(field("gpt2.attention.layer_norm_epsilon")))
    return w, hp


def layernorm(x, g, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * g + b


def gelu(x):
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))


def forward(w, hp, tokens, write=None):
    n = len(tokens)
    x = w["token_embd.weight"][tokens] + w["position_embd.weight"][:n]
    H = hp["n_head"]
    D = x.shape[1]
    Dh = D // H
    mask = np.triu(np.full((n, n), -np.inf), 1)
    for L in range(hp["n_layer"]):
        p = f"blk.{L}."
        h = layernorm(x, w[p + "attn_norm.weight"], w[p + "attn_norm.bias"], hp["eps"])
        qkv = h @ w[p + "attn_qkv.weight"].T + w[p + "attn_qkv.bias"]
        q, k, v = (qkv[:, i * D:(i + 1) * D].reshape(n, H, Dh).transpose(1, 0, 2) for i in range(3))
        s = q @ k.transpose(0, 2, 1) / np.sqrt(Dh) + mask
        s = np.exp(s - s.max(-1, keepdims=True))
        s /= s.sum(-1, keepdims=True)
        kqv = (s @ v).transpose(1, 0, 2).reshape(n, D)
        x = x + kqv @ w[p + "attn_output.weight"].T + w[p + "attn_output.bias"]
        h = layernorm(x, w[p + "ffn_norm.weight"], w[p + "ffn_norm.bias"], hp["eps"])
        f = gelu(h @ w[p + "ffn_up.weight"].T + w[p + "ffn_up.bias"])
        x = x + f @ w[p + "ffn_down.weight"].T + w[p + "ffn_down.bias"]
        if write and write[0] == L:
            write[1](x)  # blk.L.out, before blk.L+1 reads it
    x = layernorm(x, w["output_norm.weight"], w["output_norm.bias"], hp["eps"])
    out = w.get("output.weight", w["token_embd.weight"])
    return x @ out.T


def save(path, tensors):
    header, blobs, off = {}, [], 0
    for name, (dtype, arr) in tensors.items():
        b = arr.tobytes()
        header[name] = {"dtype": dtype, "shape": list(arr.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    header["__metadata__"] = {"producer": "scripts/make_patch_fixture.py",
                              "write": "set blk.2.out[3, 0:8] = 0.5"}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def main():
    w, hp = load(MODEL)
    clean = forward(w, hp, TOKENS)

    def setter(x):
        x[3, 0:8] = 0.5

    written = forward(w, hp, TOKENS, (2, setter))
    save(OUT, {
        "logits.set": ("F32", written[ROWS].astype(np.float32)),
        "prompt.tokens": ("I32", np.array(TOKENS, dtype=np.int32)),
    })
    d = np.abs(written[ROWS] - clean[ROWS]).max()
    print(f"wrote {OUT}: the write moves rows {ROWS} of the logits by up to {d:.4g}", file=sys.stderr)


if __name__ == "__main__":
    main()
