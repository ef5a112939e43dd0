#!/usr/bin/env python3
"""Checks xfdb's ChatML formatting against a model's own chat template:
renders tokenizer.chat_template from the GGUF with jinja2 (as HF's
apply_chat_template does) for one- and two-turn conversations, with and
without a system message (Qwen2's and SmolLM2's templates add a default one),
and compares with what xf.chat_format gives.
Usage: check_chat_template.py XFDB MODEL.gguf   (exit 0: identical)"""
import subprocess
import sys

import jinja2
from gguf import GGUFReader


def template_of(path):
    r = GGUFReader(path)
    f = r.fields["tokenizer.chat_template"]
    return bytes(f.parts[f.data[0]]).decode("utf-8")


def render(tpl, messages):
    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    env.globals["raise_exception"] = lambda m: (_ for _ in ()).throw(Exception(m))
    return env.from_string(tpl).render(messages=messages, add_generation_prompt=True, tools=None)


def lua_str(s):
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n") + "'"


def xfdb_render(xfdb, model, messages):
    tbl = "{" + ",".join("{role=%s,content=%s}" % (lua_str(m["role"]), lua_str(m["content"])) for m in messages) + "}"
    code = "local _ = io.write(xf.chat_format(%s))" % tbl
    out = subprocess.run([xfdb, model, "--backend", "cpu", "--unsafe-lua", "--batch", "-x", "lua " + code],
                         capture_output=True, text=True, check=True)
    return out.stdout


def main():
    xfdb, model = sys.argv[1], sys.argv[2]
    tpl = template_of(model)
    convs = {
        "one turn": [{"role": "user", "content": "Write a haiku about a minute"}],
        "quotes and newlines": [{"role": "user", "content": "Say \"hi\"\n'twice'\n\n{{ not jinja }}"}],
        "two turns": [{"role": "user", "content": "Hi there"}, {"role": "assistant", "content": "Hello! How can I help?"},
                      {"role": "user", "content": "Write a haiku about rain."}],
        "two turns + system": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                               {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Bye"}],
    }
    bad = 0
    for name, msgs in convs.items():
        want, got = render(tpl, msgs), xfdb_render(xfdb, model, msgs)
        ok = want == got
        bad += not ok
        print(f"{name}: {'identical' if ok else 'DIFFERENT'} ({len(want)} bytes)")
        if not ok:
            print("template:", repr(want))
            print("xfdb:    ", repr(got))
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
