package main

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/marlin-llm/marlin/dtype"
	"github.com/marlin-llm/marlin/format/hf"
	"github.com/marlin-llm/marlin/format/safetensors"
	"github.com/marlin-llm/marlin/quant"
	"github.com/marlin-llm/marlin/quantize"
)

// moeShapes are the mixture-of-experts models bench can build with random
// weights. They are too large for a 16-bit source to be quantized
// afterwards (GLM-4.7-Flash is 60 GB in BF16, Mixtral-8x7B 93 GB), so
// writeSyntheticDirect writes every tensor straight in the requested
// format; each tensor's random values depend only on its name, so the
// BF16 and quantized variants are the same model.
var moeShapes = map[string]map[string]any{
	// transformers' Glm4MoeLiteConfig defaults (GLM-4.7-Flash), with the
	// context capped at 32K tokens (the real config says 202752) so that
	// default cache sizes stay reasonable.
	"glm4.7-flash": {"architectures": []string{"Glm4MoeLiteForCausalLM"}, "model_type": "glm4_moe_lite",
		"vocab_size": 154880, "hidden_size": 2048, "intermediate_size": 10240, "moe_intermediate_size": 1536,
		"num_hidden_layers": 47, "num_attention_heads": 20, "num_key_value_heads": 20,
		"q_lora_rank": 768, "kv_lora_rank": 512, "qk_nope_head_dim": 192, "qk_rope_head_dim": 64, "v_head_dim": 256,
		"n_routed_experts": 64, "n_shared_experts": 1, "num_experts_per_tok": 4, "routed_scaling_factor": 1.8,
		"norm_topk_prob": true, "n_group": 1, "topk_group": 1, "first_k_dense_replace": 1,
		"rope_theta": 1e6, "rope_interleave": true, "max_position_embeddings": 32768},
	"mixtral-8x7b": {"architectures": []string{"MixtralForCausalLM"}, "model_type": "mixtral",
		"vocab_size": 32000, "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
		"num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128,
		"num_local_experts": 8, "num_experts_per_tok": 2, "rope_theta": 1e6, "max_position_embeddings": 32768},
	// small versions of both, for tests
	"tiny-glm": {"architectures": []string{"Glm4MoeLiteForCausalLM"}, "model_type": "glm4_moe_lite",
		"vocab_size": 512, "hidden_size": 128, "intermediate_size": 256, "moe_intermediate_size": 64,
		"num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 4,
		"q_lora_rank": 96, "kv_lora_rank": 64, "qk_nope_head_dim": 32, "qk_rope_head_dim": 32, "v_head_dim": 32,
		"n_routed_experts": 8, "n_shared_experts": 1, "num_experts_per_tok": 2, "routed_scaling_factor": 1.8,
		"norm_topk_prob": true, "n_group": 1, "topk_group": 1, "first_k_dense_replace": 1,
		"rope_theta": 1e6, "rope_interleave": true, "max_position_embeddings": 1024},
	"tiny-mixtral": {"architectures": []string{"MixtralForCausalLM"}, "model_type": "mixtral",
		"vocab_size": 512, "hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2,
		"num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 32,
		"num_local_experts": 4, "num_experts_per_tok": 2, "rope_theta": 1e6, "max_position_embeddings": 1024},
}

// tensorShape is one tensor a synthetic model stores.
type tensorShape struct {
	name  string
	shape []int
}

// moeTensors lists the tensors of a moeShapes configuration, in the
// Hugging Face layout the model loader reads.
func moeTensors(cfg map[string]any) []tensorShape {
	n := func(k string) int { return cfg[k].(int) }
	H, V, L := n("hidden_size"), n("vocab_size"), n("num_hidden_layers")
	ts := []tensorShape{{"model.embed_tokens.weight", []int{V, H}}}
	add := func(name string, shape ...int) { ts = append(ts, tensorShape{name, shape}) }
	arch := cfg["architectures"].([]string)[0]
	for l := range L {
		p := fmt.Sprintf("model.layers.%d.", l)
		add(p+"input_layernorm.weight", H)
		add(p+"post_attention_layernorm.weight", H)
		switch arch {
		case "MixtralForCausalLM":
			hd, nh, nkv, I, E := n("head_dim"), n("num_attention_heads"), n("num_key_value_heads"), n("intermediate_size"), n("num_local_experts")
			add(p+"self_attn.q_proj.weight", nh*hd, H)
			add(p+"self_attn.k_proj.weight", nkv*hd, H)
			add(p+"self_attn.v_proj.weight", nkv*hd, H)
			add(p+"self_attn.o_proj.weight", H, nh*hd)
			add(p+"block_sparse_moe.gate.weight", E, H)
			for e := range E {
				q := fmt.Sprintf("%sblock_sparse_moe.experts.%d.", p, e)
				add(q+"w1.weight", I, H)
				add(q+"w2.weight", H, I)
				add(q+"w3.weight", I, H)
			}
		case "Glm4MoeLiteForCausalLM":
			nh, ql, kl := n("num_attention_heads"), n("q_lora_rank"), n("kv_lora_rank")
			nope, rope, vd := n("qk_nope_head_dim"), n("qk_rope_head_dim"), n("v_head_dim")
			add(p+"self_attn.q_a_proj.weight", ql, H)
			add(p+"self_attn.q_a_layernorm.weight", ql)
			add(p+"self_attn.q_b_proj.weight", nh*(nope+rope), ql)
			add(p+"self_attn.kv_a_proj_with_mqa.weight", kl+rope, H)
			add(p+"self_attn.kv_a_layernorm.weight", kl)
			add(p+"self_attn.kv_b_proj.weight", nh*(nope+vd), kl)
			add(p+"self_attn.o_proj.weight", H, nh*vd)
			ffn := func(q string, I int) {
				add(q+"gate_proj.weight", I, H)
				add(q+"up_proj.weight", I, H)
				add(q+"down_proj.weight", H, I)
			}
			if l < n("first_k_dense_replace") {
				ffn(p+"mlp.", n("intermediate_size"))
				continue
			}
			E, mI := n("n_routed_experts"), n("moe_intermediate_size")
			add(p+"mlp.gate.weight", E, H)
			add(p+"mlp.gate.e_score_correction_bias", E)
			for e := range E {
				ffn(fmt.Sprintf("%smlp.experts.%d.", p, e), mI)
			}
			ffn(p+"mlp.shared_experts.", mI*n("n_shared_experts"))
		default:
			panic("moeTensors: architecture " + arch)
		}
	}
	add("model.norm.weight", H)
	add("lm_head.weight", V, H)
	return ts
}

// writeSyntheticDirect writes a random-weight model of configuration cfg
// into dir: the linear layers quantized by round-to-nearest to spec (nil:
// BF16), everything else (embeddings, norms, routers, the head) BF16.
// Tensors are generated and quantized on every core and written in order.
func writeSyntheticDirect(dir string, cfg map[string]any, spec *quant.Spec) error {
	w, err := hf.NewWriter(dir, true)
	if err != nil {
		return err
	}
	defer w.Abort()
	ts := moeTensors(cfg)
	type result struct {
		out []safetensors.Tensor
		err error
	}
	results := make([]chan result, len(ts))
	for i := range results {
		results[i] = make(chan result, 1)
	}
	// at most GOMAXPROCS tensors generated or waiting to be written
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	done := make(chan struct{})
	defer close(done)
	go func() {
		for i, t := range ts {
			select {
			case sem <- struct{}{}:
			case <-done:
				return
			}
			go func() {
				out, err := syntheticTensor(t, spec)
				results[i] <- result{out, err}
			}()
		}
	}()
	for i := range ts {
		r := <-results[i]
		<-sem
		if r.err != nil {
			return r.err
		}
		for _, o := range r.out {
			if err := w.AddTensor(o); err != nil {
				return err
			}
		}
	}
	full := map[string]any{"hidden_act": "silu", "rms_norm_eps": 1e-5, "bos_token_id": 1, "eos_token_id": 2,
		"torch_dtype": "bfloat16", "tie_word_embeddings": false, "attention_bias": false}
	for k, v := range cfg {
		full[k] = v
	}
	if spec != nil {
		full["quantization_config"] = quant.ConfigFor(*spec).JSON()
	}
	b, err := json.MarshalIndent(full, "", "  ")
	if err != nil {
		return err
	}
	if err := w.WriteFile("config.json", b); err != nil {
		return err
	}
	return w.Commit()
}

// syntheticTensor makes one tensor: uniform values of standard deviation
// 0.02 for matrices (like a trained model's), about 1 for norms, 0 for
// routing biases, from a generator seeded by the name; quantized when
// spec is set and the quantizer would quantize it.
func syntheticTensor(t tensorShape, spec *quant.Spec) ([]safetensors.Tensor, error) {
	h := fnv.New64a()
	h.Write([]byte(t.name))
	rng := rand.New(rand.NewPCG(h.Sum64(), 7))
	n := 1
	for _, d := range t.shape {
		n *= d
	}
	vals := make([]float32, n)
	for i := range vals {
		switch {
		case strings.HasSuffix(t.name, "e_score_correction_bias"):
		case len(t.shape) == 1:
			vals[i] = 1 + 0.1*(rng.Float32()-0.5)
		default:
			vals[i] = 0.07 * (rng.Float32() - 0.5)
		}
	}
	if spec != nil && quantize.Quantized(t.name, t.shape, false) {
		q, err := quant.QuantizeRTN(vals, t.shape[0], t.shape[1], *spec)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", t.name, err)
		}
		prefix := strings.TrimSuffix(t.name, ".weight")
		q.Name = prefix
		return q.Tensors(prefix), nil
	}
	data := make([]byte, 2*n)
	for i, v := range vals {
		b := dtype.F32ToBF16(v)
		data[2*i], data[2*i+1] = byte(b), byte(b>>8)
	}
	return []safetensors.Tensor{{Name: t.name, DType: dtype.BF16, Shape: t.shape, Data: data}}, nil
}

// syntheticMoE returns the folder of a moeShapes model in the given format
// (bf16, or a quantize format), writing it in the user cache directory on
// first use.
func syntheticMoE(shape, format string, group, headBits int) (string, error) {
	if headBits != 0 {
		return "", usagef("--head-bits: the %s synthetic model keeps its head in BF16", shape)
	}
	var spec *quant.Spec
	name := shape + "-bf16"
	if format != "bf16" {
		s, err := quant.ParseSpec(format, group, true)
		if err != nil {
			return "", usagef("%v", err)
		}
		s.MaxScale = true // random weights: the scale search would only cost time
		spec = &s
		name = fmt.Sprintf("%s-%s", shape, strings.ReplaceAll(s.String(), " ", "-"))
	}
	base, err := os.UserCacheDir()
	if err != nil {
		base = os.TempDir()
	}
	dir := filepath.Join(base, "marlin", "synthetic", name)
	if _, err := os.Stat(filepath.Join(dir, "config.json")); err == nil {
		return dir, nil
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return "", err
	}
	fmt.Fprintf(os.Stderr, "writing random-weight %s model to %s ...\n", shape, dir)
	if err := writeSyntheticDirect(dir, moeShapes[shape], spec); err != nil {
		return "", err
	}
	return dir, nil
}
