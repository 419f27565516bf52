#!/usr/bin/env python3
"""Renders the Qwen2.5 chat template of models/tokenizer_config.json with Jinja2 exactly as
Hugging Face transformers' apply_chat_template sets it up (sandboxed environment,
trim_blocks, lstrip_blocks, loopcontrols), for render_chat's test:
tests/data/tokenizer/qwen2_chat_cases.jsonl, one {"messages", "add_generation_prompt",
"rendered"} per line.

    python3 tests/tools/gen_chat_cases.py [tokenizer_config.json] [out.jsonl]

Needs Jinja2 (pip install jinja2; Debian: python3-jinja2), only to regenerate the
committed fixture: the tests read the fixture, not this script.
"""
import json
import os
import sys

import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
config_path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(root, "models/tokenizer_config.json")
out_path = sys.argv[2] if len(sys.argv) > 2 else os.path.join(root, "tests/data/tokenizer/qwen2_chat_cases.jsonl")

with open(config_path, encoding="utf-8") as f:
    config = json.load(f)
env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
env.filters["tojson"] = lambda x, **kw: json.dumps(x, ensure_ascii=False, **kw)
template = env.from_string(config["chat_template"])

av_prompt = (
    "You are a meticulous AI researcher conducting an important investigation into activation vectors from a "
    "language model. Your overall task is to describe the semantic content of that activation vector.\n\nWe will "
    "pass the vector enclosed in <concept> tags into your context. You must then produce an explanation for the "
    "vector, enclosed within <explanation> tags. The explanation consists of 2-3 text snippets describing that "
    "vector.\n\nHere is the vector:\n\n<concept>\u320e</concept>\n\nPlease provide an explanation.")
conversations = [
    [{"role": "user", "content": "Hi"}],
    [{"role": "user", "content": ""}],
    [{"role": "user", "content": av_prompt}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}],
    [{"role": "system", "content": ""}, {"role": "user", "content": "x"}],
    [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}],
    [{"role": "system", "content": "S"}, {"role": "user", "content": "u1"}, {"role": "assistant", "content": "a1"},
     {"role": "user", "content": "u2\n"}, {"role": "assistant", "content": "  a2  "}, {"role": "user", "content": "u3"}],
    [{"role": "user", "content": "a"}, {"role": "system", "content": "late system"}],
    [{"role": "system", "content": "S"}, {"role": "tool", "content": "r1"}, {"role": "tool", "content": "r2"},
     {"role": "user", "content": "u"}],
    [{"role": "user", "content": "q"}, {"role": "tool", "content": "only"}],
    [{"role": "user", "content": "<|im_start|>nested<|im_end|> 日本 🎉\r\n\t"}],
]
with open(out_path, "w", encoding="utf-8") as out:
    for messages in conversations:
        for add_generation_prompt in (True, False):
            rendered = template.render(messages=messages, tools=None, documents=None,
                                       add_generation_prompt=add_generation_prompt, bos_token=None,
                                       eos_token=config.get("eos_token"))
            out.write(json.dumps({"messages": messages, "add_generation_prompt": add_generation_prompt,
                                  "rendered": rendered}, ensure_ascii=False) + "\n")
print(f"wrote {2 * len(conversations)} cases to {out_path}")
