#!/usr/bin/env python3
"""Make the fixtures of tests/test_quant.c: blocks of every ggml type xfdb
decodes, with their dequantized values computed by code independent of xfdb
(the `gguf` Python package from llama.cpp; numpy where gguf has no decoder;
MXFP4 needs a gguf with MXFP4, 0.17 or later),
plus F16/BF16 conversion tables.

Usage:  pip install numpy gguf
        python3 scripts/make_quant_fixtures.py [OUT_DIR [TYPE...]]   (default tests/fixtures/quant, all)

Deterministic (fixed seed): rerunning it rewrites identical files.

File format (little-endian), one file per type plus halfs.bin:
    8 bytes  magic "XFQFIX01"
    records until end of file:
        24 bytes  name, ASCII, NUL-padded
        u64       byte count N
        N bytes   data
Records of <type>.bin:
    type      u32     ggml type id
    source    ASCII   who computed `values`: "gguf" or "numpy"
    blocks    bytes   random blocks (random quant bytes, sane random scales)
    values    f32[]   their dequantized values
    q_input   f32[]   (only where gguf has a quantizer) rows to quantize
    q_blocks  bytes   gguf's quantization of q_input
Records of halfs.bin:
    f16_to_f32       u32[65536]  numpy float16 -> float32 of every bit pattern
    bf16_to_f32_fnv  u64         FNV-1a 64 over the 65536 u32 results of gguf's
                                 BF16 dequantizer (a table would add 256 KiB)
    f32_in           u32[]       tricky float32 bit patterns
    f32_to_f16       u16[]       numpy float32 -> float16 of f32_in
    f32_to_bf16      u16[]       gguf's BF16 quantizer (ggml's rounding) of f32_in
"""
import os
import struct
import sys

import numpy as np

try:
    import gguf
    from gguf import GGMLQuantizationType as T
    from gguf import quants as Q
except ImportError:
    sys.exit("needs the gguf package: pip install gguf")

MAGIC = b"XFQFIX01"
RNG = np.random.default_rng(20240611)

# (block elements, block bytes) as in ggml-common.h.  gguf's own table says
# Q8_1 is 40 bytes (the old layout with two f32); ggml has used two f16 (36)
# for years, so this table is used instead of gguf.GGML_QUANT_SIZES.
SIZES = {
    "F32": (1, 4), "F16": (1, 2), "BF16": (1, 2),
    "Q4_0": (32, 18), "Q4_1": (32, 20), "Q5_0": (32, 22), "Q5_1": (32, 24),
    "Q8_0": (32, 34), "Q8_1": (32, 36),
    "Q2_K": (256, 84), "Q3_K": (256, 110), "Q4_K": (256, 144),
    "Q5_K": (256, 176), "Q6_K": (256, 210), "Q8_K": (256, 292),
    "MXFP4": (32, 17),
}
# byte offsets of the f16 scale fields of each block (the rest is random bytes)
F16_FIELDS = {
    "Q4_0": [0], "Q4_1": [0, 2], "Q5_0": [0], "Q5_1": [0, 2], "Q8_0": [0], "Q8_1": [0, 2],
    "Q2_K": [80, 82], "Q3_K": [108], "Q4_K": [0, 2], "Q5_K": [0, 2], "Q6_K": [208],
}
GGUF_QUANTIZERS = ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "MXFP4"]
# Types added after the first fixtures draw from a generator of their own,
# so that the files of the others (and halfs.bin) stay byte-identical.
OWN_RNG = {"MXFP4": 39}


def record(name, data):
    assert len(name) <= 24
    return name.encode().ljust(24, b"\0") + struct.pack("<Q", len(data)) + data


def write(path, records):
    with open(path, "wb") as f:
        f.write(MAGIC)
        for r in records:
            f.write(r)


def scale_values(n_blocks, n_fields):
    """f16 scales: block 0 all zero, block 1 subnormal, block 2 large, the
    rest uniform in [-1, 1]; never NaN or Inf"""
    s = RNG.uniform(-1, 1, size=(n_blocks, n_fields)).astype(np.float16)
    s[0] = 0
    sub = RNG.integers(1, 0x400, size=n_fields).astype(np.uint16)
    sub |= (RNG.integers(0, 2, size=n_fields) << 15).astype(np.uint16)
    s[1] = sub.view(np.float16)
    s[2] = (RNG.choice([-1, 1], size=n_fields) * RNG.uniform(100, 60000, size=n_fields)).astype(np.float16)
    assert np.all(np.isfinite(s))
    return s


def random_blocks(name, n_blocks):
    qk, bs = SIZES[name]
    raw = RNG.integers(0, 256, size=(n_blocks, bs), dtype=np.uint8)
    if name == "MXFP4":
        # byte 0 is the E8M0 exponent: every value is a scale (ggml has no
        # NaN code: 255 is 2^127); the edges 0 (2^-128, subnormal), 1, 2
        # (the first normal), 127 (1/2), 254, 255
        raw[:6, 0] = [0, 1, 2, 127, 254, 255]
        raw[6:, 0] = RNG.integers(100, 150, size=n_blocks - 6)
    elif name == "Q8_K":
        d = RNG.uniform(-1, 1, size=n_blocks).astype(np.float32)
        d[0], d[1], d[2] = 0.0, 1e-40, -12345.5  # zero, f32 subnormal, large
        raw[:, 0:4] = d.view(np.uint8).reshape(n_blocks, 4)
    else:
        offs = F16_FIELDS[name]
        s = scale_values(n_blocks, len(offs))
        for i, o in enumerate(offs):
            raw[:, o:o + 2] = s[:, i:i + 1].copy().view(np.uint8).reshape(n_blocks, 2)
    return raw


def dequant(name, raw):
    """(values, source)"""
    if name == "Q8_1":  # gguf has no Q8_1 decoder: d*q, d the first f16
        d = raw[:, 0:2].copy().view(np.float16).astype(np.float32)
        q = raw[:, 4:36].view(np.int8).astype(np.float32)
        return (q * d).reshape(-1), "numpy"
    if name == "Q8_K":  # nor a Q8_K one: f32 d times int8 q
        d = raw[:, 0:4].copy().view(np.float32)
        q = raw[:, 4:260].view(np.int8).astype(np.float32)
        return (d * q).reshape(-1), "numpy"
    vals = Q.dequantize(raw.reshape(-1), getattr(T, name))
    return np.asarray(vals, dtype=np.float32).reshape(-1), "gguf"


def quant_input():
    """16 blocks of 32: random blocks of varied magnitude, plus blocks that hit
    the special paths: all equal, all zero, exact ties of each rounding rule"""
    x = RNG.standard_normal((16, 32)).astype(np.float32)
    x *= (10.0 ** RNG.uniform(-3, 2, size=(16, 1))).astype(np.float32)
    x[3] = np.float32(0.75)  # all equal: Q4_1/Q5_1 get d = 0
    x[4] = 0  # all zero: every d = 0
    # Q8_0 with absmax 127: d = 1 and x*id = x, so halves are exact ties
    x[5] = np.arange(32, dtype=np.float32) - 15.5
    x[5, 0] = 127
    # Q4_0/Q5_0 with signed absmax -8 (d = 1) or -16 (d = 1) and half steps
    x[6] = (np.arange(32, dtype=np.float32) - 16) / 2
    x[6, 0] = -8
    x[7] = np.arange(32, dtype=np.float32) - 16.5
    x[7, 0] = -16
    # Q4_1/Q5_1 with min 0, range 15 / 31: half-step ties of (x-min)*id
    x[8] = np.linspace(0, 15, 32, dtype=np.float32)
    x[8, 1::2] = np.float32(7.5)
    x[9] = np.arange(32, dtype=np.float32) * np.float32(31 / 31.5)
    x[9, -1] = 31
    return x.reshape(-1)


def quant_input_mxfp4():
    """quant_input's rows plus MXFP4's special cases: absmax 6 gives the half
    scale 1/2, so the E2M1 grid is {0, .5, 1, 1.5, 2, 3, 4, 6}: the midpoints
    between codes are ties (ggml takes the lower code index: +0 over -0.5,
    2 over 3), -0 and values past the top code"""
    x = quant_input().reshape(16, 32)
    mid = np.array([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0], dtype=np.float32)
    x[10, :16] = np.concatenate([[6.0], mid, -mid, [7.9]])
    x[10, 16:] = np.concatenate([[-0.0, 1e-30, -1e-30, 6.5], -mid[::-1], mid[::-1][:5]])
    x[11] = np.float32(2.0 ** -120) * RNG.standard_normal(32).astype(np.float32)  # tiny: e near 0
    x[12] = np.float32(2.0 ** 100) * RNG.standard_normal(32).astype(np.float32)  # huge
    return x.reshape(-1)


def type_file(name, out):
    global RNG
    if name in OWN_RNG:
        saved, RNG = RNG, np.random.default_rng(OWN_RNG[name])
        try:
            return type_file_rng(name, out)
        finally:
            RNG = saved
    return type_file_rng(name, out)


def type_file_rng(name, out):
    qk, bs = SIZES[name]
    recs = [record("type", struct.pack("<I", int(getattr(T, name))))]
    if name in ("F32", "F16", "BF16"):
        n = 256
        if name == "F32":
            v = (RNG.standard_normal(n) * 10).astype(np.float32)
            v[:6] = [0.0, -0.0, np.inf, -np.inf, np.nan, 1e-42]
            raw = v.view(np.uint8)
            vals, src = v, "numpy"
        else:
            bits = RNG.integers(0, 65536, size=n, dtype=np.uint32).astype(np.uint16)
            raw = bits.view(np.uint8)
            if name == "F16":
                vals, src = bits.view(np.float16).astype(np.float32), "numpy"
            else:
                vals, src = np.asarray(Q.dequantize(raw, T.BF16), dtype=np.float32), "gguf"
        recs += [record("source", src.encode()), record("blocks", raw.tobytes()),
                 record("values", vals.astype(np.float32).tobytes())]
    else:
        n_blocks = 32 if qk == 32 else 8
        raw = random_blocks(name, n_blocks)
        vals, src = dequant(name, raw)
        assert vals.size == n_blocks * qk
        recs += [record("source", src.encode()), record("blocks", raw.tobytes()),
                 record("values", vals.astype(np.float32).tobytes())]
        if name in GGUF_QUANTIZERS:
            x = quant_input_mxfp4() if name == "MXFP4" else quant_input()
            qb = np.asarray(Q.quantize(x.reshape(1, -1), getattr(T, name)), dtype=np.uint8)
            assert qb.size == x.size // qk * bs
            recs += [record("q_input", x.tobytes()), record("q_blocks", qb.tobytes())]
    write(os.path.join(out, name.lower() + ".bin"), recs)


def f32_bits(vals):
    return np.array(vals, dtype=np.float32).view(np.uint32)


def tricky_f32():
    u = []
    # specials and the edges of the half range
    u += [0x00000000, 0x80000000, 0x7f800000, 0xff800000,
          0x7fc00000, 0xffc00000, 0x7f800001, 0xff800001, 0x7fffffff, 0x7f802000, 0x7f801fff,
          0x00000001, 0x007fffff, 0x00800000, 0x7f7fffff, 0xff7fffff]
    u += list(f32_bits([65504, 65505, 65519.99609375, 65520, 65536, 1e10, -65520, -65519.99609375,
                        2.0 ** -14, 2.0 ** -24, 2.0 ** -25, 3 * 2.0 ** -25, 5 * 2.0 ** -25,
                        2.0 ** -26, 1.0, -1.0, 1 + 2.0 ** -11, 1 + 3 * 2.0 ** -11,
                        2.0 ** -14 - 2.0 ** -25, 2.0 ** -14 - 2.0 ** -26]))
    for b in list(u):  # the f32 neighbours of each
        if (b & 0x7fffffff) < 0x7f800000:
            u += [(b + 1) & 0xffffffff, (b - 1) & 0xffffffff]
    # bf16 ties: low half exactly 0x8000, even and odd upper half
    u += [0x3f808000, 0x3f818000, 0xbf808000, 0xbf818000, 0x7f7f8000, 0x00018000, 0x00008000]
    # midpoints between random adjacent finite halves, and their f32 neighbours
    h = RNG.integers(0, 0x7bff, size=700).astype(np.uint16)
    lo = h.view(np.float16).astype(np.float64)
    hi = (h + 1).astype(np.uint16).view(np.float16).astype(np.float64)
    mid = f32_bits((lo + hi) / 2)  # exact in f32: halves have 11 significant bits
    sign = (RNG.integers(0, 2, size=mid.size) << 31).astype(np.uint32)
    for m, s in zip(mid, sign):
        u += [int(m) | int(s), (int(m) + 1) | int(s), (int(m) - 1) | int(s)]
    # random floats over the whole half range and a little beyond, and random bits
    mag = 2.0 ** RNG.uniform(-27, 17, size=1500) * RNG.choice([-1, 1], size=1500)
    u += list(f32_bits(mag))
    u += list(RNG.integers(0, 2 ** 32, size=1500, dtype=np.uint64))
    return np.array([int(v) & 0xffffffff for v in u], dtype=np.uint32)


def halfs_file(out):
    allh = np.arange(65536, dtype=np.uint32).astype(np.uint16)
    f16 = allh.view(np.float16).astype(np.float32).view(np.uint32)
    bf = np.asarray(Q.dequantize(allh.view(np.uint8), T.BF16), dtype=np.float32).view(np.uint32)
    h = 0xcbf29ce484222325
    for byte in bf.astype("<u4").tobytes():
        h = ((h ^ byte) * 0x100000001b3) & 0xffffffffffffffff
    xin = tricky_f32()
    with np.errstate(over="ignore", invalid="ignore"):
        to_f16 = xin.view(np.float32).astype(np.float16).view(np.uint16)
    to_bf16 = np.asarray(Q.quantize(xin.view(np.float32), T.BF16), dtype=np.uint8).view(np.uint16)
    write(os.path.join(out, "halfs.bin"), [
        record("f16_to_f32", f16.astype("<u4").tobytes()),
        record("bf16_to_f32_fnv", struct.pack("<Q", h)),
        record("f32_in", xin.astype("<u4").tobytes()),
        record("f32_to_f16", to_f16.astype("<u2").tobytes()),
        record("f32_to_bf16", to_bf16.astype("<u2").tobytes()),
    ])


def check_gguf_support():
    """say which types this gguf version decodes and quantizes itself; the
    rest are computed with numpy here (and say so in their `source` record)"""
    dec, quant = [], []
    for name in SIZES:
        if name in ("F32", "F16"):
            continue  # plain numpy dtypes in gguf too
        cls = Q._type_traits.get(getattr(T, name))
        if cls is not None:
            dec.append(name)
            try:
                cls.quantize_blocks(np.zeros((1, SIZES[name][0]), dtype=np.float32))
                quant.append(name)
            except NotImplementedError:
                pass
    print("gguf decodes:  ", " ".join(dec))
    print("gguf quantizes:", " ".join(quant))
    missing = [n for n in SIZES if n not in dec and n not in ("F32", "F16")]
    print("numpy here:    ", " ".join(missing))
    assert set(GGUF_QUANTIZERS) <= set(quant)
    assert missing == ["Q8_1", "Q8_K"], missing


def main():
    assert sys.byteorder == "little"
    check_gguf_support()
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "quant")
    os.makedirs(out, exist_ok=True)
    only = [a.upper() for a in sys.argv[2:]]  # OUT_DIR TYPE...: just those files
    for name in SIZES:
        if not only or name in only:
            type_file(name, out)
    if not only:
        halfs_file(out)
    try:
        from importlib.metadata import version
        gv = version("gguf")
    except Exception:
        gv = "?"
    print("gguf", gv, "numpy", np.__version__, "->", os.path.normpath(out))


if __name__ == "__main__":
    main()
