#!/usr/bin/env python3
"""Makes the tokenizer test vectors of tests/fixtures/vocab/ for the SmolLM
("smollm") and Llama 3 ("llama-bpe") pre-tokenizers, in llama.cpp's
test-tokenizer-0 format (NAME.inp: texts separated by
"\\n__ggml_vocab_test__\\n"; NAME.out: one line of ids per text).

The expected ids come from HF `tokenizers`, an implementation independent of
xfdb, built from the vocabulary-only GGUF's own tokens and merges with the
pre-tokenizer the model's tokenizer.json declares:
  smollm     Sequence[Digits(individual_digits), ByteLevel(use_regex)]
  llama-bpe  Sequence[Split(Llama 3's regex, isolated), ByteLevel(no regex)],
             BPE with ignore_merges (as Llama 3's tokenizer.json)
Texts are tokenized as test-tokenizer-0 does: no BOS, special tokens not
parsed (their text is split like any other text). NAME.special.out holds the
ids with special tokens parsed (HF with the control tokens added).

The vocabularies:
  ggml-vocab-smollm.gguf     the tokenizer.* keys of SmolLM2-135M-Instruct
                             (scripts/fetch_models.sh smollm2), no tensors
  ggml-vocab-llama-bpe.gguf  Llama 3's BPE cut to its first 16384 ranks:
                             llama_models/llama3/tokenizer.model (tiktoken
                             ranks) from the PyPI package llama-models==0.3.0,
                             merges derived from the ranks (each token of rank
                             r is the BPE of its bytes over the ranks below r,
                             which gives exactly two parts), plus Llama 3's
                             five control tokens after them. The real 128256
                             ids would make an 8 MB fixture; the first 16384
                             ranks are a valid BPE with the same regex, merges
                             and rules.

    pip install tokenizers gguf numpy
    python3 scripts/make_tokenizer_vectors.py [--smollm MODEL.gguf] [--llama3 TOKENIZER.model]
"""
import argparse
import base64
import os
import sys

import gguf
from tokenizers import Regex, Tokenizer, AddedToken, decoders, models, pre_tokenizers

HERE = os.path.dirname(os.path.abspath(__file__))
VOCAB = os.path.join(HERE, "..", "tests", "fixtures", "vocab")
SEP = "\n__ggml_vocab_test__\n"
N_LLAMA3 = 16384
LLAMA3_RE = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
             r"|\s*[\r\n]+|\s+(?!\S)|\s+")
LLAMA3_SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
                   "<|eot_id|>"]

# code, CJK, emoji, digits, whitespace runs, special tokens (as text)
EXTRA = [
    "def f(x):\n    return x ** 2  # square\n",
    "for (int i = 0; i < n; i++) {\n\tsum += a[i];\n}",
    "if x == 1:\r\n    print('one')\r\n",
    "#include <stdio.h>\nint main(void) { return 0; }",
    "const re = /\\d{3}-\\d{4}/g; // phone",
    "SELECT id, name FROM users WHERE age >= 21;",
    "日本語のテキストを分割します。",
    "中文分词测试：你好，世界！",
    "한국어 텍스트 123",
    "Emoji 🎉🎉 party 👩‍👩‍👧‍👦 family 🇫🇷",
    "1234567890",
    " 12 345 6789 ",
    "3.14159, 2.71828 and 1e-10",
    "Version v1.2.3-rc4 (build 20240101)",
    "١٢٣ ٤٥٦ Arabic-Indic digits, ⅷ roman, ²³ superscripts",
    "a  b   c    d",
    "    leading and trailing    ",
    "tabs\t\tand\t\t\tnewlines\n\n\n\nend",
    " \n \n",
    "\u00a0non-breaking\u2003em space\u3000ideographic",
    "<|im_start|>user\nHi<|im_end|>",
    "<|endoftext|> and <|begin_of_text|><|eot_id|>",
    "It's they're we've I'm you'll he'd IT'S",
    "naïve café résumé Ωmega",
    "URL: https://example.com/path?q=1&r=2#frag",
]


def base_texts():
    with open(os.path.join(VOCAB, "ggml-vocab-qwen2.gguf.inp"), encoding="utf-8") as f:
        t = f.read().split(SEP)
    while t and t[-1] == "":
        t.pop()  # the loader ends the list at the last separator
    return t


def write_vectors(name, texts, tok, tok_special):
    path = os.path.join(VOCAB, name)
    with open(path + ".inp", "w", encoding="utf-8", newline="") as f:
        f.write(SEP.join(texts))
    for suffix, tk in ((".out", tok), (".special.out", tok_special)):
        with open(path + suffix, "w", encoding="utf-8") as f:
            for t in texts:
                f.write("".join(f" {i}" for i in tk.encode(t, add_special_tokens=False).ids) + "\n")
    print(f"{name}: {len(texts)} texts")


def gguf_strings(r, key):
    f = r.fields[key]
    return [bytes(f.parts[i]).decode("utf-8") for i in f.data]


def hf_bpe(tokens, merges, pre, ignore_merges, specials):
    vocab = {t: i for i, t in enumerate(tokens)}
    assert len(vocab) == len(tokens), "duplicate tokens"
    pairs = [tuple(m.split(" ", 1)) for m in merges]
    t = Tokenizer(models.BPE(vocab=vocab, merges=pairs, ignore_merges=ignore_merges))
    t.pre_tokenizer = pre
    t.decoder = decoders.ByteLevel()
    ts = Tokenizer.from_str(t.to_str())
    ts.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    return t, ts


def smollm(model):
    r = gguf.GGUFReader(model)
    assert r.fields["tokenizer.ggml.pre"].contents() == "smollm"
    out = os.path.join(VOCAB, "ggml-vocab-smollm.gguf")
    w = gguf.GGUFWriter(out, "llama")
    tokens = gguf_strings(r, "tokenizer.ggml.tokens")
    merges = gguf_strings(r, "tokenizer.ggml.merges")
    types = [int(x) for x in r.fields["tokenizer.ggml.token_type"].contents()]
    w.add_name("SmolLM2-135M-Instruct vocabulary")
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("smollm")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    for key, fn in (("tokenizer.ggml.bos_token_id", w.add_bos_token_id),
                    ("tokenizer.ggml.eos_token_id", w.add_eos_token_id),
                    ("tokenizer.ggml.unknown_token_id", w.add_unk_token_id),
                    ("tokenizer.ggml.padding_token_id", w.add_pad_token_id)):
        fn(int(r.fields[key].contents()))
    w.add_add_bos_token(bool(r.fields["tokenizer.ggml.add_bos_token"].contents()))
    w.add_chat_template(r.fields["tokenizer.chat_template"].contents())
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.close()
    specials = [t for t, ty in zip(tokens, types) if ty == 3]
    pre = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                   pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    tok, tok_sp = hf_bpe(tokens, merges, pre, False, specials)
    write_vectors("ggml-vocab-smollm.gguf", base_texts() + EXTRA, tok, tok_sp)
    print(f"{out}: {os.path.getsize(out)} bytes, {len(specials)} control tokens")


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def split_by_ranks(ranks, token, max_rank):
    """The BPE of `token` over the ranks below max_rank (tiktoken's rule):
    for a trained token this ends in exactly two parts, its merge."""
    parts = [bytes([b]) for b in token]
    while True:
        best = None
        for i in range(len(parts) - 1):
            r = ranks.get(parts[i] + parts[i + 1])
            if r is not None and r < max_rank and (best is None or r < best[0]):
                best = (r, i)
        if best is None:
            return parts
        i = best[1]
        parts = parts[:i] + [parts[i] + parts[i + 1]] + parts[i + 2:]


def llama3(model_file):
    ranks = {}
    with open(model_file, "rb") as f:
        for line in f:
            if line.strip():
                b64, r = line.split()
                ranks[base64.b64decode(b64)] = int(r)
    by_rank = sorted((r, b) for b, r in ranks.items() if r < N_LLAMA3)
    assert [r for r, _ in by_rank] == list(range(N_LLAMA3)), "ranks not dense"
    assert all(len(b) == 1 for r, b in by_rank[:256]) and len({b for _, b in by_rank[:256]}) == 256, \
        "the first 256 ranks are not the 256 bytes"
    enc = bytes_to_unicode()
    u = lambda b: "".join(enc[x] for x in b)
    tokens = [u(b) for _, b in by_rank]
    merges = []
    for r, b in by_rank[256:]:
        p = split_by_ranks(ranks, b, r)
        assert len(p) == 2, f"rank {r}: {b!r} splits into {len(p)} parts"
        merges.append(u(p[0]) + " " + u(p[1]))
    types = [1] * len(tokens) + [3] * len(LLAMA3_SPECIALS)
    tokens += LLAMA3_SPECIALS
    out = os.path.join(VOCAB, "ggml-vocab-llama-bpe.gguf")
    w = gguf.GGUFWriter(out, "llama")
    w.add_name(f"Llama 3 BPE, first {N_LLAMA3} ranks (llama-models 0.3.0 tokenizer.model)")
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("llama-bpe")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(N_LLAMA3)
    w.add_eos_token_id(N_LLAMA3 + 4)  # <|eot_id|>, as the instruct models
    w.add_add_bos_token(True)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.close()
    pre = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(LLAMA3_RE), behavior="isolated", invert=False),
                                   pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok, tok_sp = hf_bpe(tokens, merges, pre, True, LLAMA3_SPECIALS)
    write_vectors("ggml-vocab-llama-bpe.gguf", base_texts() + EXTRA, tok, tok_sp)
    print(f"{out}: {os.path.getsize(out)} bytes")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--smollm", default=os.path.expanduser("~/.cache/xfdb/smollm2-135m-instruct-q4_1.gguf"))
    ap.add_argument("--llama3", help="llama_models/llama3/tokenizer.model (pip download llama-models==0.3.0)")
    a = ap.parse_args()
    if a.smollm:
        smollm(a.smollm)
    if a.llama3:
        llama3(a.llama3)


if __name__ == "__main__":
    sys.exit(main())
