#!/usr/bin/env python3
"""Token-for-token parity of `lema tokenize` with Hugging Face `tokenizers`
and `sentencepiece` (run where both are installed, e.g. the GPU machine; no
downloads: every tokenizer is trained here on a generated corpus).

    python3 tests/gpu/tokenizer_parity.py --lema build-gpu/cli/lema [--n 1500] [--keep DIR]

Kinds checked (each on the same >= 1,000 diverse strings, encode with and
without special tokens, and decode):
  spm-legacy     tokenizer.json, Llama-2 layout: Prepend+Replace normalizer,
                 BPE with byte_fallback, Replace/ByteFallback/Fuse/Strip decoder
  spm-metaspace  tokenizer.json, newer Llama layout: Metaspace pre-tokenizer
                 (prepend_scheme first, split false), Metaspace decoder
  byte-level     tokenizer.json, Llama-3 layout: Split with Llama-3's regex +
                 ByteLevel, ignore_merges, 64 added special tokens, BOS template
  gpt2           tokenizer.json, GPT-2 layout: ByteLevel pre-tokenizer with its
                 own regex, <|endoftext|>
  spm-model      tokenizer.model trained by sentencepiece (BPE, byte fallback)

With --assets DIR (the chat_templates folder of scripts/fetch_test_assets.sh's
cache: one directory per real tokenizer, tokenizer.json +
tokenizer_config.json; copy it to a machine without network) it also checks
lema against transformers' AutoTokenizer on each real tokenizer found there
(Llama-3.1, Qwen3 with its NFC normalizer, Gemma 3, Mistral Nemo, Llama-2,
DeepSeek-V3):
  strings   `lema tokenize --jsonl` == tokenizer(s, add_special_tokens=False
            and True) on the same varied strings, and `--decode` of those ids
            == the backend tokenizer's decode(skip_special_tokens=False)
  chat      `lema template render --ids` (with and without
            --add-generation-prompt) on conversations (system or not,
            multi-turn, unicode, quotes and braces): the text ==
            apply_chat_template(tokenize=False), the ids ==
            apply_chat_template(tokenize=True) (no second BOS); Llama-2's
            package has no template: Meta's, in tree, through --template

    python3 tests/gpu/tokenizer_parity.py --lema build-gpu/cli/lema \
        --assets ~/.cache/lema-test-assets/chat_templates [--assets-only]

Prints the counts; exits 1 on any mismatch, 2 if a library is missing.
"""
import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time

ROOT_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                  r"|\s*[\r\n]+|\s+(?!\S)|\s+")
CHAT = ("<|system|>\nYou are a precise assistant trained using LEMA.\n\n<|user|>\nWhat is 17 * 23?\n\n"
        "<|assistant|>\n[LEMA_REPLY]\nAnswer: 391\nExplanation: 17 * 23 = 391.\nConfidence: High\n[/LEMA_REPLY]\n")
WORDS = ("the of and to in is was that for it with as his on be at by this had not are but from or have an they "
         "which one you were her all she there would their we him been has when who will more no if out so said "
         "what up its about into than them can only other new some could time these two may then do first any my "
         "now such like our over man me even most made after also did many before must through back years where "
         "much your way well down should because each just those people Mr how too little state good very make "
         "world still own see men work long get here between both life being under never day same another know "
         "tokenizer streaming gradient checkpoint LoRA adapter Answer Explanation Confidence High Medium Low "
         "café naïve résumé Zürich señor façade Ålborg don't it's we'll I'm they've she'd").split()
ODD = [" ", "  ", "   ", "\t", "\n", "\n\n", "\r\n", " \n ", "\t\t ", "\x01", "\x7f", "\x1b[0m", "\u200b", "\u00a0",
       "\u2581", "\u2581\u2581", "0", "42", "3.14159", "1,000,000", "2026-11-29", "🤖🤖", "👨‍👩‍👧", "é", "e\u0301",
       "ß", "ﬁ", "Ⅻ", "①", "𝔘", "\ufffd", "東京", "中文", "日本語", "한국어", "Привет мир", "Ελλάδα", "مرحبا",
       "<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_3|>", "<|endoftext|>", "'S", "'LL", "ǅ"]
PUNCT = list(".,!?;:-()\"'[]{}/\\#$%&*+=<>@^_`|~") + ["--", "..."]


def sentence(rng, n):
    out = []
    for _ in range(n):
        w = rng.choice(WORDS)
        if rng.random() < 0.15:
            w += rng.choice(PUNCT)
        if rng.random() < 0.1:
            w += " " + str(rng.randrange(100000))
        out.append(w)
    return " ".join(out)


def test_strings(n):
    rng = random.Random(1234)
    out = ["", " ", "  ", "\n", "a", " a", "a ", "  a  b  ", "Hello world", CHAT, "\t\tindent\n    code()",
           "1234567890", "😀", "\u2581x", "x\u2581", "trailing   ", "   leading", "<s>", "</s>x", "<unk>"]
    while len(out) < n:
        s = ""
        for _ in range(1 + rng.randrange(6)):
            k = rng.randrange(5)
            if k == 0:
                s += rng.choice(ODD)
            elif k == 1:
                s += rng.choice(PUNCT)
            elif k == 2:
                s += str(rng.randrange(1000000))
            else:
                s += sentence(rng, 1 + rng.randrange(8))
            if rng.random() < 0.33:
                s += rng.choice(ODD[:8])
        if rng.random() < 0.05:
            s = CHAT + s
        out.append(s)
    return out


def corpus_lines(n=8000):
    rng = random.Random(7)
    lines = [sentence(rng, 4 + rng.randrange(20)) for _ in range(n)]
    lines += [CHAT] * 50
    return lines


def byte_pieces():
    return ["<0x%02X>" % b for b in range(256)]


def train_spm_json(tk, lines, layout):
    """SentencePiece-BPE kind: train BPE on ▁-words, then set the Llama layout."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    tok = Tokenizer(models.BPE(unk_token="<unk>", fuse_unk=True, byte_fallback=True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always", split=True)
    trainer = trainers.BpeTrainer(vocab_size=1200, special_tokens=["<unk>", "<s>", "</s>"], show_progress=False)
    tok.train_from_iterator(lines, trainer)
    j = json.loads(tok.to_str())
    vocab = j["model"]["vocab"]
    nxt = max(vocab.values()) + 1
    for p in byte_pieces():  # byte-fallback pieces live in the model vocab, as in Llama-2
        if p not in vocab:
            vocab[p] = nxt
            nxt += 1
    j["model"]["byte_fallback"] = True
    j["model"]["fuse_unk"] = True
    bos = {"type": "TemplateProcessing",
           "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
           "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                    {"SpecialToken": {"id": "<s>", "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
           "special_tokens": {"<s>": {"id": "<s>", "ids": [vocab["<s>"]], "tokens": ["<s>"]}}}
    j["post_processor"] = bos
    if layout == "legacy":
        j["normalizer"] = {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": "\u2581"},
            {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]}
        j["pre_tokenizer"] = None
        j["decoder"] = {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
            {"type": "ByteFallback"}, {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0}]}
    else:
        j["normalizer"] = None
        j["pre_tokenizer"] = {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first", "split": False}
        j["decoder"] = {"type": "Sequence", "decoders": [
            {"type": "ByteFallback"},
            {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first", "split": False}]}
    return tk.Tokenizer.from_str(json.dumps(j))


def train_byte_level_json(tk, lines, layout):
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    specials = ["<|begin_of_text|>", "<|end_of_text|>"] + ["<|reserved_special_token_%d|>" % i for i in range(62)]
    if layout == "gpt2":
        specials = ["<|endoftext|>"]
    try:
        model = models.BPE(ignore_merges=(layout == "llama3"))
    except TypeError:  # older tokenizers
        model = models.BPE()
    tok = Tokenizer(model)
    if layout == "llama3":
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(LLAMA3_PATTERN), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False)])
    else:
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=2000, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(lines, trainer)
    if layout == "llama3":
        bos = tok.token_to_id("<|begin_of_text|>")
        tok.post_processor = processors.TemplateProcessing(
            single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A <|begin_of_text|> $B",
            special_tokens=[("<|begin_of_text|>", bos)])
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    return tok


def run_lema(lema, tok_path, jsonl, extra):
    r = subprocess.run([lema, "tokenize", "--tokenizer", tok_path, "--jsonl", jsonl] + extra,
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError("lema tokenize failed (%d): %s" % (r.returncode, r.stderr.strip()))
    return [json.loads(line) for line in r.stdout.splitlines()]


def compare(name, lema, path, strings, encode, decode, work):
    """encode(s, special) -> ids; decode(ids) -> text. Returns mismatch count."""
    jsonl = os.path.join(work, name + ".strings.jsonl")
    with open(jsonl, "w") as f:
        for s in strings:
            f.write(json.dumps(s) + "\n")
    bad = 0
    for special in (False, True):
        ours = run_lema(lema, path, jsonl, ["--special"] if special else [])
        ref = [encode(s, special) for s in strings]
        ok = sum(1 for a, b in zip(ours, ref) if a == b)
        shown = 0
        for s, a, b in zip(strings, ours, ref):
            if a != b and shown < 3:
                print("  MISMATCH %s special=%s: %r\n    lema %s\n    ref  %s" % (name, special, s, a[:40], b[:40]))
                shown += 1
        print("%-14s encode%s: %d/%d identical" % (name, " +special" if special else "        ", ok, len(strings)))
        bad += len(strings) - ok
    ids_jsonl = os.path.join(work, name + ".ids.jsonl")
    ref_ids = [encode(s, True) for s in strings]
    with open(ids_jsonl, "w") as f:
        for ids in ref_ids:
            f.write(json.dumps(ids) + "\n")
    ours = run_lema(lema, path, ids_jsonl, ["--decode"])
    ref = [decode(ids) for ids in ref_ids]
    ok = sum(1 for a, b in zip(ours, ref) if a == b)
    shown = 0
    for ids, a, b in zip(ref_ids, ours, ref):
        if a != b and shown < 3:
            print("  MISMATCH %s decode %s:\n    lema %r\n    ref  %r" % (name, ids[:20], a, b))
            shown += 1
    print("%-14s decode        : %d/%d identical" % (name, ok, len(strings)))
    return bad + len(strings) - ok


def msg(role, content):
    return {"role": role, "content": content}


CONVERSATIONS = [
    [msg("user", "Hello!")],
    [msg("user", "What is 2+2?"), msg("assistant", "4")],
    [msg("system", "You are terse."), msg("user", "Hi"), msg("assistant", "Hello.")],
    [msg("system", "Be kind."), msg("user", "Q1"), msg("assistant", "A1"), msg("user", "Q2"), msg("assistant", "A2")],
    [msg("user", "Grüße, 世界! 👋🏽 — ça va? e\u0301 ﬁ {{ not a var }} {% if %}"),
     msg("assistant", "Très bien 😊 \"quoted\" 'single'\n\tindented  \n")],
    [msg("user", "  leading and trailing  \n\n"), msg("assistant", "Ａ full-width, Å angstrom, 한국어, \u00a0nbsp")],
]


def lema_lines(args):
    r = subprocess.run(args, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError("%s failed (%d): %s" % (" ".join(args[:3]), r.returncode, r.stderr.strip()))
    return [json.loads(line) for line in r.stdout.splitlines()]


def check_asset(name, d, lema, strings, work, llama2_chat):
    """One real tokenizer directory: returns (checked, mismatches)."""
    from transformers import AutoTokenizer
    try:
        tok = AutoTokenizer.from_pretrained(d)
    except Exception as e:  # a tokenizer class this transformers lacks
        print("%-14s transformers cannot load it (%s: %s); not checked" % (name, type(e).__name__, e))
        return 0, 0
    checked = bad = 0
    # Varied strings, through `lema tokenize` (encode with and without
    # special tokens, then decode of transformers' ids).
    mismatches = compare(name, lema, os.path.join(d, "tokenizer.json"), strings,
                         lambda s, sp: tok(s, add_special_tokens=sp)["input_ids"],
                         lambda ids: tok.backend_tokenizer.decode(ids, skip_special_tokens=False), work)
    checked += 3 * len(strings)
    bad += mismatches
    # Chat strings, through `lema template render --ids`.
    config = json.load(open(os.path.join(d, "tokenizer_config.json")))
    template = config.get("chat_template")
    override = []
    if not isinstance(template, str) and name == "llama2":
        template = llama2_chat
        override = ["--template", os.path.join(ROOT_DIR, "tests/common/text/chat_templates/llama2_chat.jinja")]
    if not isinstance(template, str):
        print("%-14s chat          : no single chat template; not checked" % name)
        return checked, bad
    convs = []
    for conv in CONVERSATIONS:
        try:  # the template's own refusals (e.g. roles that must alternate) are not lema's business here
            tok.apply_chat_template(conv, chat_template=template, tokenize=False)
            convs.append(conv)
        except Exception:
            pass
    conv_path = os.path.join(work, name + ".conversations.jsonl")
    with open(conv_path, "w") as f:
        for conv in convs:
            f.write(json.dumps({"messages": conv}, ensure_ascii=False) + "\n")
    ok = total = 0
    for gen in (False, True):
        ours = lema_lines([lema, "template", "render", "--model", d, "--messages", conv_path, "--ids"] + override +
                          (["--add-generation-prompt"] if gen else []))
        for conv, got in zip(convs, ours):
            text = tok.apply_chat_template(conv, chat_template=template, tokenize=False, add_generation_prompt=gen)
            ids = tok.apply_chat_template(conv, chat_template=template, tokenize=True, add_generation_prompt=gen)
            if isinstance(ids, dict) or hasattr(ids, "keys"):
                ids = ids["input_ids"]
            total += 1
            if got["text"] == text and got["ids"] == list(ids):
                ok += 1
            else:
                print("  MISMATCH %s chat gen=%s %r\n    lema %r %s\n    hf   %r %s" %
                      (name, gen, conv[-1]["content"][:30], got["text"][:80], got["ids"][:24], text[:80], list(ids)[:24]))
    print("%-14s chat text+ids : %d/%d identical" % (name, ok, total))
    return checked + total, bad + total - ok


def check_assets(assets, lema, strings, work):
    try:
        import transformers
    except ImportError as e:
        print("tokenizer_parity: --assets needs transformers (%s)" % e, file=sys.stderr)
        return None
    print("transformers %s, assets %s" % (transformers.__version__, assets))
    llama2_chat = open(os.path.join(ROOT_DIR, "tests/common/text/chat_templates/llama2_chat.jinja")).read()
    checked = bad = 0
    for name in sorted(os.listdir(assets)):
        d = os.path.join(assets, name)
        if not os.path.isfile(os.path.join(d, "tokenizer.json")):
            continue
        c, b = check_asset(name, d, lema, strings, work, llama2_chat)
        checked += c
        bad += b
    return checked, bad


def hf_speed(tok, lines):
    text_bytes = sum(len(l.encode()) for l in lines)
    t0 = time.process_time()
    for l in lines:
        tok.encode(l, add_special_tokens=False)
    return text_bytes / 1e6 / (time.process_time() - t0)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lema", required=True, help="path to the lema binary")
    ap.add_argument("--n", type=int, default=1500, help="number of test strings (>= 1000)")
    ap.add_argument("--keep", help="write the tokenizers and string files here instead of a temp dir")
    ap.add_argument("--assets", help="folder of real tokenizer directories (the asset cache's chat_templates/)")
    ap.add_argument("--assets-only", action="store_true", help="with --assets: skip the trained tokenizers")
    args = ap.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if not os.access(args.lema, os.X_OK):
        print("tokenizer_parity: %s is not an executable" % args.lema, file=sys.stderr)
        return 2
    work = args.keep or tempfile.mkdtemp(prefix="lema_tok_parity_")
    os.makedirs(work, exist_ok=True)
    strings = test_strings(max(args.n, 1000))
    total_bad = 0
    if args.assets:
        if not os.path.isdir(args.assets):
            print("tokenizer_parity: %s is not a directory" % args.assets, file=sys.stderr)
            return 2
        counts = check_assets(args.assets, args.lema, strings, work)
        if counts is None:
            return 2
        checked, bad = counts
        print("real tokenizers: %d checks, %d mismatches" % (checked, bad))
        if checked == 0:
            print("tokenizer_parity: no real tokenizer could be checked in %s" % args.assets, file=sys.stderr)
            return 2
        total_bad += bad
        if args.assets_only:
            print("TOTAL mismatches: %d" % total_bad)
            return 1 if total_bad else 0
    try:
        import tokenizers as tk
        import sentencepiece as spm
    except ImportError as e:
        print("tokenizer_parity: needs Python packages tokenizers and sentencepiece (%s)" % e, file=sys.stderr)
        return 2
    lines = corpus_lines()
    print("tokenizers %s, sentencepiece %s, %d strings, work dir %s" % (tk.__version__, spm.__version__, len(strings), work))

    hf = {"spm-legacy": train_spm_json(tk, lines, "legacy"),
          "spm-metaspace": train_spm_json(tk, lines, "metaspace"),
          "byte-level": train_byte_level_json(tk, lines, "llama3"),
          "gpt2": train_byte_level_json(tk, lines, "gpt2")}
    for name, tok in hf.items():
        path = os.path.join(work, name + ".tokenizer.json")
        tok.save(path)
        total_bad += compare(name, args.lema, path, strings,
                             lambda s, sp, t=tok: t.encode(s, add_special_tokens=sp).ids,
                             lambda ids, t=tok: t.decode(ids, skip_special_tokens=False), work)

    corpus = os.path.join(work, "corpus.txt")
    with open(corpus, "w") as f:
        f.write("\n".join(lines) + "\n")
    prefix = os.path.join(work, "spm")
    spm.SentencePieceTrainer.train(
        input=corpus, model_prefix=prefix, vocab_size=1200, hard_vocab_limit=False, model_type="bpe", byte_fallback=True, split_digits=True,
        character_coverage=1.0, normalization_rule_name="identity", remove_extra_whitespaces=False,
        add_dummy_prefix=True, allow_whitespace_only_pieces=True, unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
        minloglevel=2)
    sp = spm.SentencePieceProcessor(model_file=prefix + ".model")
    total_bad += compare("spm-model", args.lema, prefix + ".model", strings,
                         lambda s, special: ([sp.bos_id()] if special else []) + sp.encode(s),
                         lambda ids: sp.decode(ids), work)

    bench_lines = [sentence(random.Random(i), 30) for i in range(20000)]
    for name in ("spm-legacy", "byte-level"):
        print("HF tokenizers %s encode, one thread: %.2f MB/s" % (name, hf_speed(hf[name], bench_lines)))
    print("TOTAL mismatches: %d" % total_bad)
    return 1 if total_bad else 0


if __name__ == "__main__":
    sys.exit(main())
