#!/usr/bin/python3
"""Reads an NLA checkpoint's nla_meta.yaml the way the authors' loader does, in Python.

The authors' code (kitft/natural_language_autoencoders) loads the sidecar with PyYAML and
fills the prompts with str.format: actor_template.format(injection_char=...) and
critic_template.format(explanation=...). A template with any other placeholder raises
KeyError there. This script does the same on a checkpoint nla wrote, so a test can prove
that the authors' stack reads ours.

    authors_loader_check.py CHECKPOINT_DIR
Prints one JSON line (role, the formatted prompts) and exits 0, or prints the error and
exits 1.
"""
import json
import sys

import yaml


def main():
    directory = sys.argv[1]
    with open(f"{directory}/nla_meta.yaml", encoding="utf-8") as f:
        meta = yaml.safe_load(f)
    assert meta["schema_version"] == 2, meta["schema_version"]
    role = meta["role"]
    assert role in ("av", "ar"), role
    tokens = meta["tokens"]
    templates = meta["prompt_templates"]
    actor = templates["actor"].format(injection_char=tokens["injection_char"])
    critic = templates["critic"].format(explanation="the cat sat on the mat")
    assert actor.count(tokens["injection_char"]) == 1, actor
    if role == "ar":
        layer = meta["critic"]["extraction_layer_index"]
        assert isinstance(layer, int) and layer >= 0, layer
    print(json.dumps({"role": role, "actor": actor, "critic": critic}, ensure_ascii=False))


if __name__ == "__main__":
    try:
        main()
    except Exception as error:  # noqa: BLE001 - any failure is the answer
        print(f"{type(error).__name__}: {error}", file=sys.stderr)
        sys.exit(1)
