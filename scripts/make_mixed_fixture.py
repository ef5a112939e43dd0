#!/usr/bin/env python3
"""Makes tests/fixtures/qwen2/qwen2-gqa-mix.gguf: qwen2-gqa-f32.gguf with
attn_q and attn_k in Q5_0 and attn_v in Q8_0 (gguf-py's quantizers,
llama.cpp's reference ones), every other tensor as it is. The weight types
of a Qwen2.5-0.5B Q4_K_M layer whose v has more bits: q, k and v of two
types, which the CUDA decode fast path runs in one launch
(kern_cuda_matvec_pair_fused). test_exec_graph runs it op by op, in graphs
and in the megakernel and wants every tensor the same bits; it has no
float64 reference of its own (the Q8_0 and F32 files have).

    pip install gguf numpy
    python3 scripts/make_mixed_fixture.py [IN.gguf [OUT.gguf]]
"""
import sys

import numpy as np
import gguf

src = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/qwen2/qwen2-gqa-f32.gguf"
dst = sys.argv[2] if len(sys.argv) > 2 else "tests/fixtures/qwen2/qwen2-gqa-mix.gguf"
Q = gguf.GGMLQuantizationType
r = gguf.GGUFReader(src)
arch = bytes(r.fields["general.architecture"].parts[-1]).decode()
w = gguf.GGUFWriter(dst, arch)
for name, f in r.fields.items():
    if name.startswith("GGUF.") or name == "general.architecture":
        continue
    t = f.types[0]
    if t == gguf.GGUFValueType.ARRAY:
        sub = f.types[-1]
        if sub == gguf.GGUFValueType.STRING:
            vals = [bytes(f.parts[i]).decode() for i in f.data]
        else:
            vals = [f.parts[i].tolist()[0] for i in f.data]
        w.add_key_value(name, vals, t, sub_type=sub)
    elif t == gguf.GGUFValueType.STRING:
        w.add_key_value(name, bytes(f.parts[-1]).decode(), t)
    else:
        w.add_key_value(name, f.parts[-1].tolist()[0], t)
for t in r.tensors:
    a = np.array(t.data, dtype=np.float32).reshape([int(x) for x in reversed(t.shape)])
    qt = Q.Q5_0 if t.name.endswith(("attn_q.weight", "attn_k.weight")) else \
        Q.Q8_0 if t.name.endswith("attn_v.weight") else None
    if qt is None:
        w.add_tensor(t.name, a)
    else:
        w.add_tensor(t.name, gguf.quants.quantize(a, qt), raw_dtype=qt)
w.write_header_to_file()
w.write_kv_data_to_file()
w.write_tensors_to_file()
w.close()
print(dst)
