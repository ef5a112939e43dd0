#!/usr/bin/env python3
"""Greedy chat reply of HF transformers on a GGUF file, to set beside xfdb's `chat`.

    python3 scripts/hf_chat_greedy.py ~/.cache/xfdb/smollm2-135m-instruct-q4_1.gguf \
        "Write a haiku about a minute" 60
    ./build/xfdb ~/.cache/xfdb/smollm2-135m-instruct-q4_1.gguf --batch \
        -x 'chat -n 60 Write a haiku about a minute'

transformers dequantizes the GGUF's weights and applies the model's own chat template
(SmolLM2's default system message included); the reply's ids and text are printed.
Needs torch, transformers, gguf and accelerate (CPU is enough for 135M-1.5B models).
"""
import os
import sys

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer


def main():
    if len(sys.argv) < 3:
        sys.exit("usage: hf_chat_greedy.py MODEL.gguf MESSAGE [N_TOKENS]")
    path, message = sys.argv[1], sys.argv[2]
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 60
    d, f = os.path.dirname(os.path.abspath(path)), os.path.basename(path)
    tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32)
    ids = tok.apply_chat_template([{"role": "user", "content": message}], add_generation_prompt=True,
                                  return_tensors="pt")
    if not isinstance(ids, torch.Tensor):
        ids = ids["input_ids"]
    out = model.generate(ids, max_new_tokens=n, do_sample=False)
    gen = out[0, ids.shape[1]:]
    print("ids:", " ".join(str(i) for i in gen.tolist()))
    print(tok.decode(gen, skip_special_tokens=True))


if __name__ == "__main__":
    main()
