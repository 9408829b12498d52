#!/usr/bin/env python3
"""transformers' apply_chat_template against lema's reference renderer.

lema's chat-template renderer is checked byte for byte against
tests/tools/render_chat_template.py by ctest (chat_template_parity_test,
no transformers needed). This script closes the chain where transformers
is installed (the GPU machine): for the templates fetched by
scripts/fetch_test_assets.sh it checks that

  - the reference's text == tokenizer.apply_chat_template(tokenize=False),
    with and without add_generation_prompt (and Qwen3's enable_thinking);
  - transformers' ids (tokenize=True) == tokenizer(reference text,
    add_special_tokens=False): no second BOS, as lema's tokenize_chat does;
  - for a template with {% generation %} blocks, transformers'
    return_assistant_tokens_mask == the tokens inside the reference's spans.

    bash scripts/fetch_test_assets.sh   # or copy the cache there
    python3 tests/gpu/chat_template_parity.py [--assets DIR]

Prints the counts; exits 1 on a mismatch, 2 when transformers is missing.
"""
import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "tools"))

import render_chat_template as ref  # noqa: E402

NOW = 1721995200


def msg(role, content):
    return {"role": role, "content": content}


CONVERSATIONS = [
    [msg("user", "Hello!")],
    [msg("user", "What is 2+2?"), msg("assistant", "4")],
    [msg("system", "You are terse."), msg("user", "Hi"), msg("assistant", "Hello.")],
    [msg("system", "Be kind."), msg("user", "Q1"), msg("assistant", "A1"), msg("user", "Q2"), msg("assistant", "A2")],
    [msg("user", "Grüße, 世界! 👋🏽 {{ not a var }}"), msg("assistant", "Très bien 😊 \"quoted\"\n\tindented  ")],
    [msg("user", "Think."), msg("assistant", "<think>\nreasoning\n</think>\n\nThe answer.")],
]


def special_tokens(config):
    out = {}
    for key in ("bos_token", "eos_token", "unk_token", "pad_token"):
        v = config.get(key)
        if isinstance(v, dict):
            v = v.get("content")
        if isinstance(v, str):
            out[key] = v
    return out


def reference(template, messages, add_generation_prompt, special, extra):
    ctx = {"messages": messages, "tools": None, "documents": None, "add_generation_prompt": add_generation_prompt}
    ctx.update(special)
    ctx.update(extra)
    return ref.render({"template": template, "context": ctx, "now": NOW})


def main():
    ap = argparse.ArgumentParser()
    default_assets = os.path.join(os.environ.get("LEMA_ASSET_CACHE", os.path.expanduser("~/.cache/lema-test-assets")),
                                  "chat_templates")
    ap.add_argument("--assets", default=default_assets)
    args = ap.parse_args()
    try:
        import transformers
        from transformers import AutoTokenizer
    except ImportError:
        print("transformers is not installed", file=sys.stderr)
        return 2
    print(f"transformers {transformers.__version__}")
    if not os.path.isdir(args.assets):
        print(f"no assets in {args.assets}; run scripts/fetch_test_assets.sh", file=sys.stderr)
        return 2

    texts = ids = fails = 0
    llama2_chat = open(os.path.join(ROOT, "tests/common/text/chat_templates/llama2_chat.jinja")).read()
    for name in sorted(os.listdir(args.assets)):
        d = os.path.join(args.assets, name)
        if not os.path.isfile(os.path.join(d, "tokenizer_config.json")):
            continue
        config = json.load(open(os.path.join(d, "tokenizer_config.json")))
        template = config.get("chat_template") or (llama2_chat if name == "llama2" else None)
        if not isinstance(template, str):
            print(f"{name}: no single chat template; skipped")
            continue
        try:
            tok = AutoTokenizer.from_pretrained(d)
        except Exception as e:  # a tokenizer class this transformers lacks
            print(f"{name}: transformers cannot load it ({type(e).__name__}: {e}); skipped")
            continue
        special = special_tokens(config)
        extras = [{}] + ([{"enable_thinking": False}, {"enable_thinking": True}] if name == "qwen3" else [])
        for conv in CONVERSATIONS:
            for gen in (False, True):
                for extra in extras:
                    want = reference(template, conv, gen, special, extra)
                    try:
                        got = tok.apply_chat_template(conv, chat_template=template, tokenize=False,
                                                      add_generation_prompt=gen, **extra)
                    except Exception as e:
                        got = None
                        err = f"{type(e).__name__}: {e}"
                    if "error" in want or got is None:
                        if not ("error" in want and got is None):
                            fails += 1
                            print(f"MISMATCH {name} gen={gen} {extra}: reference {want.get('error')!r} vs hf {err if got is None else 'ok'}")
                        continue
                    texts += 1
                    if got != want["text"]:
                        fails += 1
                        print(f"MISMATCH text {name} gen={gen} {extra}:\n  hf:  {got!r}\n  ref: {want['text']!r}")
                        continue
                    hf_ids = tok.apply_chat_template(conv, chat_template=template, tokenize=True,
                                                     add_generation_prompt=gen, **extra)
                    if isinstance(hf_ids, dict) or hasattr(hf_ids, "keys"):
                        hf_ids = hf_ids["input_ids"]
                    ids += 1
                    if list(hf_ids) != tok(want["text"], add_special_tokens=False)["input_ids"]:
                        fails += 1
                        print(f"MISMATCH ids {name} gen={gen} {extra}")
        print(f"{name}: checked")

    # Assistant masks through {% generation %}.
    masks = 0
    gen_template = open(os.path.join(ROOT, "tests/common/text/chat_templates/chatml_generation.jinja")).read()
    d = os.path.join(args.assets, "llama3_1")
    if os.path.isdir(d):
        tok = AutoTokenizer.from_pretrained(d)
        for conv in CONVERSATIONS:
            want = reference(gen_template, conv, False, {}, {})
            out = tok.apply_chat_template(conv, chat_template=gen_template, tokenize=True, return_dict=True,
                                          return_assistant_tokens_mask=True)
            enc = tok(want["text"], add_special_tokens=False, return_offsets_mapping=True)
            text_bytes = want["text"].encode("utf-8")
            # Reference spans are UTF-8 byte offsets; offsets are characters.
            char_spans = [(len(text_bytes[:b].decode("utf-8")), len(text_bytes[:e].decode("utf-8")))
                          for b, e in want["generation"]]
            mine = [int(any(b >= sb and e <= se and e > b for sb, se in char_spans)) for b, e in enc["offset_mapping"]]
            masks += 1
            if list(out["assistant_masks"]) != mine:
                fails += 1
                print(f"MISMATCH assistant mask: hf {list(out['assistant_masks'])} ref {mine}")
    print(f"texts {texts}, ids {ids}, assistant masks {masks}, mismatches {fails}")
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
