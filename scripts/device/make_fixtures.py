#!/usr/bin/env python3
"""Build tiny random-weight Hugging Face models of every supported architecture
and record transformers' reference outputs for them.

Run on a machine with torch and transformers (the GPU machine has torch 2.11 and
transformers 5.17; a GPU is not needed):

    python3 scripts/device/make_fixtures.py OUTDIR

For each fixture it writes OUTDIR/<name>/ with config.json, model.safetensors,
generation_config.json (from save_pretrained) and reference.json:

    {"name", "dtype", "transformers", "ids": prompt ids,
     "logits": fp32 logits, one row per prompt position,
     "greedy": 12 tokens of greedy continuation (argmax, no EOS stop)}

Weights are drawn wider than the default init (and norms and biases are
randomised too) so that any mistake in the math shows in the logits. The
reference runs in float32 on the weights as saved (rounded to bf16/fp16 first
where the fixture is stored in 16 bits), loaded back with from_pretrained.
"""
import json
import math
import os
import sys
import traceback

import torch
import transformers
from transformers import AutoModelForCausalLM

OUT = sys.argv[1]
VOCAB = 256
PROMPT_LEN = 12
GREEDY = 12

DTYPES = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}


def cfg(cls_name, **kw):
    cls = getattr(transformers, cls_name)
    rope = kw.pop("rope", None)
    if rope is not None:
        try:
            return cls(rope_parameters=rope, **kw)
        except Exception:
            # older transformers: rope_theta + rope_scaling
            rope = dict(rope)
            theta = rope.pop("rope_theta")
            return cls(rope_theta=theta, rope_scaling=rope if rope.get("rope_type", "default") != "default" else None, **kw)
    return cls(**kw)


COMMON = dict(vocab_size=VOCAB, bos_token_id=0, eos_token_id=1, pad_token_id=None, max_position_embeddings=512)

FIXTURES = [
    # ---- dense (issue 2) ----
    ("llama-gqa-bf16-tied-llama3rope", "bf16", lambda: cfg(
        "LlamaConfig", hidden_size=64, intermediate_size=160, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True, rms_norm_eps=1e-5,
        rope={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
              "high_freq_factor": 4.0, "original_max_position_embeddings": 32}, **COMMON)),
    ("llama-mha-f16-untied-linearrope", "f16", lambda: cfg(
        "LlamaConfig", hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=4, tie_word_embeddings=False, rms_norm_eps=1e-6,
        rope={"rope_type": "linear", "rope_theta": 10000.0, "factor": 2.0}, **COMMON)),
    ("llama-mqa-f32-bias", "f32", lambda: cfg(
        "LlamaConfig", hidden_size=48, intermediate_size=96, num_hidden_layers=3,
        num_attention_heads=6, num_key_value_heads=1, tie_word_embeddings=False, rms_norm_eps=1e-5,
        attention_bias=True, mlp_bias=True, rope={"rope_type": "default", "rope_theta": 10000.0}, **COMMON)),
    ("qwen3-gqa-bf16-tied", "bf16", lambda: cfg(
        "Qwen3Config", hidden_size=64, intermediate_size=160, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=32, tie_word_embeddings=True, rms_norm_eps=1e-6,
        rope={"rope_type": "default", "rope_theta": 1000000.0}, **COMMON)),
    ("qwen3-f16-untied", "f16", lambda: cfg(
        "Qwen3Config", hidden_size=64, intermediate_size=96, num_hidden_layers=3,
        num_attention_heads=8, num_key_value_heads=4, head_dim=24, tie_word_embeddings=False, rms_norm_eps=1e-6,
        rope={"rope_type": "default", "rope_theta": 10000.0}, **COMMON)),
    # ---- mixture of experts and latent attention (issue 7) ----
    ("mixtral-bf16", "bf16", lambda: cfg(
        "MixtralConfig", hidden_size=64, intermediate_size=96, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, num_local_experts=4, num_experts_per_tok=2,
        tie_word_embeddings=False, rms_norm_eps=1e-5, sliding_window=None,
        rope={"rope_type": "default", "rope_theta": 1000000.0}, **COMMON)),
    ("qwen3moe-bf16-sparsestep", "bf16", lambda: cfg(
        "Qwen3MoeConfig", hidden_size=64, intermediate_size=128, moe_intermediate_size=48, num_hidden_layers=4,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, num_experts=8, num_experts_per_tok=2,
        norm_topk_prob=True, decoder_sparse_step=2, mlp_only_layers=[3], tie_word_embeddings=False,
        rms_norm_eps=1e-6, rope={"rope_type": "default", "rope_theta": 1000000.0}, **COMMON)),
    ("qwen3moe-f32-nonorm", "f32", lambda: cfg(
        "Qwen3MoeConfig", hidden_size=48, intermediate_size=96, moe_intermediate_size=32, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=4, head_dim=16, num_experts=6, num_experts_per_tok=3,
        norm_topk_prob=False, decoder_sparse_step=1, mlp_only_layers=[], tie_word_embeddings=True,
        rms_norm_eps=1e-6, rope={"rope_type": "default", "rope_theta": 10000.0}, **COMMON)),
    ("glm4moelite-bf16", "bf16", lambda: cfg(
        "Glm4MoeLiteConfig", hidden_size=64, intermediate_size=128, moe_intermediate_size=32, num_hidden_layers=3,
        num_attention_heads=4, num_key_value_heads=4, n_routed_experts=8, n_shared_experts=1, num_experts_per_tok=2,
        routed_scaling_factor=1.8, kv_lora_rank=32, q_lora_rank=48, qk_rope_head_dim=16, v_head_dim=24,
        qk_nope_head_dim=16, n_group=1, topk_group=1, norm_topk_prob=True, rope_interleave=True,
        mlp_layer_types=["dense", "sparse", "sparse"], tie_word_embeddings=False, rms_norm_eps=1e-5,
        rope={"rope_type": "default", "rope_theta": 10000.0}, **COMMON)),
    ("deepseekv3-bf16-grouped-yarn", "bf16", lambda: cfg(
        "DeepseekV3Config", hidden_size=64, intermediate_size=128, moe_intermediate_size=32, num_hidden_layers=3,
        num_attention_heads=4, num_key_value_heads=4, n_routed_experts=16, n_shared_experts=1, num_experts_per_tok=4,
        routed_scaling_factor=2.5, kv_lora_rank=32, q_lora_rank=None, qk_rope_head_dim=16, v_head_dim=16,
        qk_nope_head_dim=32, n_group=4, topk_group=2, norm_topk_prob=True, first_k_dense_replace=1,
        rope_interleave=True, tie_word_embeddings=False, rms_norm_eps=1e-6,
        rope={"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0, "original_max_position_embeddings": 128,
              "beta_fast": 32.0, "beta_slow": 1.0, "mscale": 1.0, "mscale_all_dim": 1.0}, **COMMON)),
    ("deepseekv3-f16-qlora-nointerleave", "f16", lambda: cfg(
        "DeepseekV3Config", hidden_size=64, intermediate_size=96, moe_intermediate_size=24, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=2, n_routed_experts=8, n_shared_experts=2, num_experts_per_tok=2,
        routed_scaling_factor=1.0, kv_lora_rank=24, q_lora_rank=32, qk_rope_head_dim=8, v_head_dim=16,
        qk_nope_head_dim=16, n_group=2, topk_group=1, norm_topk_prob=False, first_k_dense_replace=0,
        rope_interleave=False, tie_word_embeddings=True, rms_norm_eps=1e-6,
        rope={"rope_type": "default", "rope_theta": 10000.0}, **COMMON)),
]


def randomise(model, gen):
    """Draw every parameter (and the routing-bias buffers) wider than the default init."""
    with torch.no_grad():
        named = list(model.named_parameters()) + [
            (n, b) for n, b in model.named_buffers() if "e_score_correction_bias" in n]
        for name, p in named:
            if "norm" in name and p.dim() == 1:
                p.copy_(1.0 + 0.3 * torch.randn(p.shape, generator=gen))
            elif p.dim() == 1:  # biases, routing bias
                p.copy_(0.2 * torch.randn(p.shape, generator=gen))
            elif "embed_tokens" in name:
                p.copy_(torch.randn(p.shape, generator=gen))
            else:
                fan_in = p.shape[-1]
                p.copy_(torch.randn(p.shape, generator=gen) * (1.5 / math.sqrt(fan_in)))


def logits_of(model, ids):
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].float()


def build(name, dtype_name, make):
    gen = torch.Generator().manual_seed(1234)
    config = make()
    model = AutoModelForCausalLM.from_config(config)
    model.eval()
    randomise(model, gen)
    model = model.to(DTYPES[dtype_name])  # round the weights to the stored precision
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    model.save_pretrained(d)
    # Reference math in fp32 on the weights as saved, loaded back the way a
    # user loads them (from_pretrained keeps buffers such as RoPE's inverse
    # frequencies in fp32; a plain model.float() would keep them rounded).
    model = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32)
    model.eval()
    ids = torch.randint(2, VOCAB, (PROMPT_LEN,), generator=gen).tolist()
    logits = logits_of(model, ids)
    seq = list(ids)
    for _ in range(GREEDY):
        seq.append(int(logits_of(model, seq)[-1].argmax()))
    # margin between the best and second-best logit at each greedy step, to
    # know how robust the continuation is to rounding
    margins = []
    for t in range(PROMPT_LEN - 1, PROMPT_LEN + GREEDY - 1):
        row = logits_of(model, seq[: t + 1])[-1]
        top = torch.topk(row, 2).values
        margins.append(float(top[0] - top[1]))
    ref = {
        "name": name, "dtype": dtype_name, "transformers": transformers.__version__,
        "ids": ids, "logits": logits.tolist(), "greedy": seq[PROMPT_LEN:], "greedy_margins": margins,
    }
    with open(os.path.join(d, "reference.json"), "w") as f:
        json.dump(ref, f)
    print(f"{name}: ok, {sum(p.numel() for p in model.parameters())} params, greedy {ref['greedy']}, "
          f"min margin {min(margins):.4f}", flush=True)


def main():
    os.makedirs(OUT, exist_ok=True)
    failed = 0
    for name, dt, make in FIXTURES:
        try:
            build(name, dt, make)
        except Exception:
            failed += 1
            print(f"{name}: FAILED", flush=True)
            traceback.print_exc()
    # show one saved config of each family for the record
    for name, _, _ in FIXTURES:
        p = os.path.join(OUT, name, "config.json")
        if os.path.exists(p):
            print("==", name, open(p).read(), flush=True)
            idx = os.path.join(OUT, name, "model.safetensors")
            from safetensors import safe_open
            with safe_open(idx, "pt") as f:
                keys = sorted(f.keys())
                print("   tensors:", len(keys), [k for k in keys if "layers.1." in k][:40], flush=True)
    print(f"fixtures done, {failed} failed", flush=True)


if __name__ == "__main__":
    main()
