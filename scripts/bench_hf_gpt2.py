#!/usr/bin/env python3
"""The alternative a user would pick: HF transformers GPT-2 (124M config,
random weights, eager attention) decoding with its KV cache on the same GPU,
plus the memory-bandwidth floor (weight bytes / measured device copy rate).
Prints one line per figure; medians after a warm-up, CUDA-synchronized per
token as greedy generation is. Usage: bench_hf_gpt2.py [N_TOKENS]"""
import statistics
import sys
import time

import torch
from transformers import GPT2Config, GPT2LMHeadModel


def copy_bandwidth():
    n = 1 << 28  # 1 GiB of f32
    a = torch.empty(n, dtype=torch.float32, device="cuda")
    b = torch.empty_like(a)
    for _ in range(3):
        b.copy_(a)
    torch.cuda.synchronize()
    ts = []
    for _ in range(10):
        e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        e0.record()
        b.copy_(a)
        e1.record()
        torch.cuda.synchronize()
        ts.append(e0.elapsed_time(e1) / 1e3)
    return 2 * a.numel() * 4 / statistics.median(ts)  # read + write


def decode_ms(dtype, n_tokens):
    torch.manual_seed(0)
    cfg = GPT2Config()  # 12 layers, 768, 12 heads, 50257, 1024: the 124M shape
    m = GPT2LMHeadModel(cfg).to("cuda", dtype=dtype).eval()
    m.config._attn_implementation = "eager"
    weight_bytes = sum(p.numel() * p.element_size() for p in m.parameters())
    tok = torch.tensor([[50256]], device="cuda")
    with torch.no_grad():
        out = m(input_ids=tok, use_cache=True)
        past = out.past_key_values
        ts = []
        for i in range(n_tokens + 8):
            t0 = time.perf_counter()
            out = m(input_ids=tok, past_key_values=past, use_cache=True)
            past = out.past_key_values
            tok = out.logits[:, -1:].argmax(-1)
            tok.item()  # greedy generation reads the token: a sync per token
            if i >= 8:
                ts.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(ts), weight_bytes


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 128
    bw = copy_bandwidth()
    print(f"device: {torch.cuda.get_device_name()}")
    print(f"device copy bandwidth: {bw / 1e9:.0f} GB/s (read + write)")
    for name, dt in (("f16", torch.float16), ("f32", torch.float32)):
        ms, wb = decode_ms(dt, n)
        # xfdb's GGUF ties the output to token_embd as HF does: the same bytes
        print(f"hf eager {name}: decode {ms:.3f} ms/token (median of {n}); "
              f"weights {wb / 1e6:.1f} MB, floor {wb / bw * 1e3:.4f} ms/token")


if __name__ == "__main__":
    main()
