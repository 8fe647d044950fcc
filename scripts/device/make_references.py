#!/usr/bin/env python3
"""Reference outputs computed with Python's `tokenizers` and `transformers`.

    python3 scripts/device/make_references.py SHARED_DATA OUTDIR

SHARED_DATA is a copy of ../shared/data (only the files named below are read).
Writes:
  OUTDIR/tokenizer/<name>.json.gz  ids that `tokenizers` gives for a few hundred KB
      of mixed text: {"tokenizer": dir under shared data, "cases": [case...]} where a
      case is {"text": ..., "ids": [...]} for text generated here, or
      {"file": path under shared data, "start": byte, "end": byte, "ids": [...]} for a
      slice of a shared text file (cut at line ends, so valid UTF-8).
  OUTDIR/tinystories-ppl.json  TinyStories-656K perplexity on the TinyStories excerpt
      computed with transformers, for several context lengths (see perplexity()).
"""
import gzip
import json
import math
import os
import random
import sys

import torch
from tokenizers import Tokenizer

SHARED, OUT = sys.argv[1], sys.argv[2]

TEXT_FILES = [
    ("text/tinyshakespeare/input.txt", 120_000),
    ("text/wikitext-2-raw/wiki.test.raw", 120_000),
    ("text/tinystories/TinyStories-valid.excerpt.txt", 40_000),
    ("text/ptb/ptb.valid.txt", 30_000),
]

SYNTHETIC = [
    "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n\nprint([fib(i) for i in range(10)])\n",
    "package main\n\nimport \"fmt\"\n\nfunc main() {\n\tfor i := 0; i < 3; i++ {\n\t\tfmt.Printf(\"%d\\n\", i)\n\t}\n}\n",
    '{"name": "marlin", "version": [1, 2, 3], "nested": {"a": null, "b": true, "c": 3.14e-10}}',
    "<html><body><div class=\"x\">&amp; &lt;tag&gt;</div></body></html>\r\n",
    "SELECT id, name FROM users WHERE age >= 21 AND name LIKE '%son' ORDER BY id DESC;",
    "Emoji: 😀😃😄😁 👩‍👩‍👧‍👦 🇯🇵 🏳️‍🌈 ❤️ 👍🏽 and text 🚀🚀🚀",
    "中文：我们的模型可以处理中文文本，包括标点符号。日本語：これは日本語の文です。カタカナとひらがな。한국어: 안녕하세요, 세계!",
    "Ελληνικά, Русский текст, עברית, العربية, हिन्दी, ไทย, Tiếng Việt có dấu.",
    "Whitespace runs:    four spaces,\t\ttabs,\n\n\nthree newlines,  \n  \t \n trailing   ",
    "                                                            (sixty spaces)",
    "\n\n\n\n\n\n\n\n",
    "Numbers 1234567890 3.14159 1e10 -42 0x1F 1,000,000 2026-11-25 12:34:56",
    "URLs https://example.com/path?query=1&x=y#frag and emails someone@example.org",
    "Accents: café naïve façade résumé Ångström Zürich São Paulo Dvořák ½ ¾ ™ © ®",
    "MiXeD CaSe, ALLCAPS, snake_case_names, camelCaseNames, kebab-case-names.",
    "Contractions: I'm, you're, he's, she'd, we'll, they've, don't, can't, won't; 'quoted' \"double\"",
    "Math: ∀x∈ℝ, ∃y: x² + y² = z²; ∑_{i=1}^{n} i = n(n+1)/2; √2 ≈ 1.41421",
    "Zero-width: a\u200bb\u200cc\u200dd\ufeffe and combining: e\u0301 a\u0308 n\u0303",
    "Tabs\tinside\twords\tand  double  spaces  everywhere .",
    "   leading spaces and trailing spaces   ",
]


def mixed_cases():
    cases = []
    for text in SYNTHETIC:
        cases.append({"text": text})
    rng = random.Random(7)
    pieces = [t for t in SYNTHETIC]
    for _ in range(200):  # random concatenations of the synthetic pieces
        k = rng.randint(1, 4)
        cases.append({"text": "".join(rng.choice(pieces)[: rng.randint(1, 80)] for _ in range(k))})
    for rel, budget in TEXT_FILES:
        data = open(os.path.join(SHARED, rel), "rb").read()
        pos, used = 0, 0
        while used < budget and pos < len(data):
            end = min(len(data), pos + rng.randint(200, 3000))
            nl = data.find(b"\n", end)
            end = len(data) if nl < 0 else nl + 1
            cases.append({"file": rel, "start": pos, "end": end})
            used += end - pos
            pos = end
    return cases


def text_of(case):
    if "text" in case:
        return case["text"]
    data = open(os.path.join(SHARED, case["file"]), "rb").read()
    return data[case["start"]:case["end"]].decode("utf-8")


def tokenizer_refs():
    os.makedirs(os.path.join(OUT, "tokenizer"), exist_ok=True)
    cases = mixed_cases()
    total = sum(len(text_of(c).encode()) for c in cases)
    for name, rel in [("mistral", "tokenizers/mistral"), ("llama3", "tokenizers/llama3"),
                      ("qwen3", "tokenizers/qwen3"), ("tinystories", "models/tinystories-656k")]:
        tok = Tokenizer.from_file(os.path.join(SHARED, rel, "tokenizer.json"))
        out = []
        for c in cases:
            e = dict(c)
            e["ids"] = tok.encode(text_of(c), add_special_tokens=False).ids
            out.append(e)
        with gzip.open(os.path.join(OUT, "tokenizer", name + ".json.gz"), "wt") as f:
            json.dump({"tokenizer": rel, "cases": out}, f)
        print(f"tokenizer {name}: {len(out)} cases, {total} bytes, {sum(len(e['ids']) for e in out)} ids", flush=True)


def perplexity(model, ids, bos, ctx):
    """The definition marlin's `perplexity` command uses: the token stream is cut
    into consecutive windows of ctx-1 tokens; each window is prefixed with BOS
    and every one of its tokens is scored given BOS and the tokens before it in
    the window. ppl = exp(total NLL / scored tokens)."""
    nll, n = 0.0, 0
    step = ctx - 1
    with torch.no_grad():
        for s in range(0, len(ids), step):
            chunk = ids[s:s + step]
            inp = torch.tensor([[bos] + chunk])
            logits = model(inp).logits[0].double()
            logp = torch.log_softmax(logits, dim=-1)
            for t, tok in enumerate(chunk):
                nll -= float(logp[t, tok])
                n += 1
    return math.exp(nll / n), nll, n


def tinystories_ppl():
    from transformers import AutoModelForCausalLM
    d = os.path.join(SHARED, "models/tinystories-656k")
    # raw bytes: text mode would turn the file's \r\n into \n
    text = open(os.path.join(SHARED, "text/tinystories/TinyStories-valid.excerpt.txt"), "rb").read().decode("utf-8")
    tok = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
    ids = tok.encode(text, add_special_tokens=False).ids
    model = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32)
    model.eval()
    res = {"model": "models/tinystories-656k", "text": "text/tinystories/TinyStories-valid.excerpt.txt",
           "bos": 1, "ids": ids, "runs": []}
    for ctx in (64, 256, 512):
        ppl, nll, n = perplexity(model, ids, 1, ctx)
        res["runs"].append({"ctx": ctx, "ppl": ppl, "nll": nll, "tokens": n})
        print(f"tinystories-656k ctx {ctx}: ppl {ppl:.6f} over {n} tokens", flush=True)
    # a greedy story from BOS, for the record
    seq = [1] + tok.encode("Once upon a time", add_special_tokens=False).ids
    with torch.no_grad():
        for _ in range(60):
            seq.append(int(model(torch.tensor([seq])).logits[0, -1].argmax()))
    res["greedy_story_ids"] = seq
    res["greedy_story"] = tok.decode(seq)
    print("story:", res["greedy_story"], flush=True)
    with open(os.path.join(OUT, "tinystories-ppl.json"), "w") as f:
        json.dump(res, f)


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    tokenizer_refs()
    tinystories_ppl()
