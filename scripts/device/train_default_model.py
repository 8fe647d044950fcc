#!/usr/bin/env python3
"""Train marlin's embedded default model: a small Llama on tiny Shakespeare.

    python3 scripts/device/train_default_model.py INPUT_TXT OUTDIR [SECONDS]

INPUT_TXT is ../shared/data/text/tinyshakespeare/input.txt. The text is split at
the line end nearest 90%: the first part trains, the rest is held out. A
byte-level BPE tokenizer of 2048 tokens is trained on the training part with
the `tokenizers` package; the model (LlamaForCausalLM, ~4.9M parameters) trains
for SECONDS of wall time (default 240) on a GPU with bf16 autocast, evaluating
on the held-out part every few hundred steps and keeping the best weights.

OUTDIR receives an HF model folder (config.json, model.safetensors in bf16,
generation_config.json, tokenizer.json, tokenizer_config.json) and train_log.json
with the loss curve, the held-out perplexity (marlin's definition: windows of
ctx-1 tokens each prefixed by BOS, every token scored) and a sample.
The checkpoint is then quantized by `marlin quantize` and embedded in the binary.
"""
import json
import math
import os
import sys
import time

import torch
import torch.nn.functional as F
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import AutoModelForCausalLM, LlamaConfig

INPUT, OUT = sys.argv[1], sys.argv[2]
BUDGET = float(sys.argv[3]) if len(sys.argv) > 3 else 240.0
VOCAB, CTX, BATCH = 2048, 256, 64
BOS = "<|endoftext|>"
torch.manual_seed(0)
dev = "cuda" if torch.cuda.is_available() else "cpu"

text = open(INPUT, encoding="utf-8").read()
cut = text.index("\n", int(len(text) * 0.9)) + 1
train_text, val_text = text[:cut], text[cut:]

tok = Tokenizer(models.BPE())
tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
tok.decoder = decoders.ByteLevel()
trainer = trainers.BpeTrainer(vocab_size=VOCAB, special_tokens=[BOS], min_frequency=2,
                              initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
tok.train_from_iterator(train_text.splitlines(keepends=True), trainer)
bos_id = tok.token_to_id(BOS)
tok.post_processor = processors.TemplateProcessing(single=f"{BOS} $A", special_tokens=[(BOS, bos_id)])
train_ids = torch.tensor(tok.encode(train_text, add_special_tokens=False).ids, dtype=torch.long)
val_ids = tok.encode(val_text, add_special_tokens=False).ids
print(f"tokenizer: vocab {tok.get_vocab_size()}, train {len(train_ids)} tokens, held-out {len(val_ids)} tokens", flush=True)

kw = dict(vocab_size=tok.get_vocab_size(), hidden_size=256, intermediate_size=704, num_hidden_layers=6,
          num_attention_heads=8, num_key_value_heads=4, max_position_embeddings=512, tie_word_embeddings=True,
          rms_norm_eps=1e-5, bos_token_id=bos_id, eos_token_id=bos_id, pad_token_id=None)
try:
    config = LlamaConfig(rope_parameters={"rope_type": "default", "rope_theta": 10000.0}, **kw)
except Exception:
    config = LlamaConfig(rope_theta=10000.0, **kw)
model = AutoModelForCausalLM.from_config(config).to(dev)
nparams = sum(p.numel() for p in model.parameters())
print(f"model: {nparams} parameters", flush=True)

decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                        lr=2e-3, betas=(0.9, 0.95), fused=(dev == "cuda"))


def batch():
    ix = torch.randint(0, len(train_ids) - CTX, (BATCH,))
    seqs = torch.stack([train_ids[i:i + CTX - 1] for i in ix.tolist()])
    x = torch.cat([torch.full((BATCH, 1), bos_id), seqs], dim=1)  # BOS + 255 tokens
    return x.to(dev)


def heldout_ppl(m, dtype=None):
    """marlin's perplexity definition over the whole held-out text."""
    m.eval()
    nll, n = 0.0, 0
    step = CTX - 1
    windows = [val_ids[s:s + step] for s in range(0, len(val_ids), step)]
    with torch.no_grad():
        for w in windows:
            x = torch.tensor([[bos_id] + w], device=dev)
            with torch.autocast(dev, dtype=torch.bfloat16, enabled=dtype is not None):
                logits = m(x).logits[0].float()
            logp = torch.log_softmax(logits.double(), dim=-1)
            nll -= float(logp[torch.arange(len(w)), torch.tensor(w, device=dev)].sum())
            n += len(w)
    m.train()
    return math.exp(nll / n), n


start = time.time()
step, best, best_state, log = 0, float("inf"), None, []
total_steps, warmup = None, 100
model.train()
while True:
    elapsed = time.time() - start
    if elapsed > BUDGET:
        break
    if step == 200 and total_steps is None:
        total_steps = int(200 * BUDGET / elapsed)
        print(f"planning {total_steps} steps", flush=True)
    T = total_steps or 10 ** 9
    lr = 2e-3 * min(1.0, (step + 1) / warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(step, T) / T)))
    for g in opt.param_groups:
        g["lr"] = lr
    x = batch()
    with torch.autocast(dev, dtype=torch.bfloat16, enabled=(dev == "cuda")):
        logits = model(x[:, :-1]).logits
    loss = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), x[:, 1:].reshape(-1))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    step += 1
    if step % 250 == 0:
        ppl, _ = heldout_ppl(model, dtype=torch.bfloat16)
        entry = {"step": step, "seconds": round(time.time() - start, 1), "train_loss": float(loss),
                 "heldout_loss": math.log(ppl), "heldout_ppl": ppl, "lr": lr}
        log.append(entry)
        print(json.dumps(entry), flush=True)
        if ppl < best:
            best = ppl
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}

model.load_state_dict(best_state)
model = model.to(torch.bfloat16).to("cpu")
os.makedirs(OUT, exist_ok=True)
model.save_pretrained(OUT)
tok.save(os.path.join(OUT, "tokenizer.json"))
with open(os.path.join(OUT, "tokenizer_config.json"), "w") as f:
    json.dump({"add_bos_token": True, "add_eos_token": False, "bos_token": BOS, "eos_token": BOS,
               "model_max_length": 512, "tokenizer_class": "PreTrainedTokenizerFast",
               "clean_up_tokenization_spaces": False}, f, indent=2)

# final numbers in fp32 math on the bf16 weights, the way marlin computes them
dev = "cpu"
model = AutoModelForCausalLM.from_pretrained(OUT, dtype=torch.float32)  # keeps RoPE buffers in fp32
final_ppl, n = heldout_ppl(model)
with torch.no_grad():
    seq = [bos_id]
    for _ in range(120):
        seq.append(int(model(torch.tensor([seq])).logits[0, -1].argmax()))
sample = tok.decode(seq[1:])
summary = {"parameters": nparams, "steps": step, "seconds": round(time.time() - start, 1),
           "train_tokens": len(train_ids), "heldout_tokens": n, "heldout_ppl_bf16_weights_fp32_math": final_ppl,
           "heldout_split_char": cut, "best_heldout_ppl_during_training": best, "greedy_sample": sample,
           "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
           "torch": torch.__version__, "log": log,
           "command": "python3 scripts/device/train_default_model.py input.txt OUT %g" % BUDGET}
with open(os.path.join(OUT, "train_log.json"), "w") as f:
    json.dump(summary, f, indent=1)
print(f"held-out ppl {final_ppl:.3f} over {n} tokens; sample:\n{sample}", flush=True)
