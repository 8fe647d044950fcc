package main

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"maps"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"

	"github.com/marlin-llm/marlin/dtype"
	"github.com/marlin-llm/marlin/format/hf"
	"github.com/marlin-llm/marlin/format/safetensors"
	"github.com/marlin-llm/marlin/quant"
	"github.com/marlin-llm/marlin/quantize"
)

// shapes are the models bench can build with random weights (--synthetic):
// their config.json, less the defaults writeSynthetic adds.
var shapes = map[string]map[string]any{
	"llama3.2-1b": {"architectures": []string{"LlamaForCausalLM"}, "model_type": "llama",
		"hidden_size": 2048, "num_hidden_layers": 16, "num_attention_heads": 32, "num_key_value_heads": 8,
		"intermediate_size": 8192, "vocab_size": 128256, "tie_word_embeddings": true, "head_dim": 64, "rope_theta": 500000.0},
	"llama3-8b": {"architectures": []string{"LlamaForCausalLM"}, "model_type": "llama",
		"hidden_size": 4096, "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
		"intermediate_size": 14336, "vocab_size": 128256, "head_dim": 128, "rope_theta": 500000.0},
	"tiny": {"architectures": []string{"LlamaForCausalLM"}, "model_type": "llama",
		"hidden_size": 256, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
		"intermediate_size": 512, "vocab_size": 1024, "head_dim": 64, "rope_theta": 500000.0},
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

func shapeNames() string {
	var n []string
	for k := range shapes {
		n = append(n, k)
	}
	slices.Sort(n)
	return strings.Join(n, ", ")
}

// synthetic returns the folder of a random-weight model of the given shape
// and format (bf16, or a quantize format; headBits also quantizes a
// quantized format's output head), writing it in the user cache directory
// on first use.
// layers > 0 replaces the shape's layer count (a shorter model of the same
// layer shapes, for profiling).
func synthetic(shape, format string, group, headBits, layers int) (string, error) {
	cfg, ok := shapes[shape]
	if !ok {
		return "", usagef("unknown --synthetic shape %q (%s)", shape, shapeNames())
	}
	if layers > 0 {
		cfg = maps.Clone(cfg)
		cfg["num_hidden_layers"] = layers
		shape = fmt.Sprintf("%s-%dl", shape, layers)
	}
	opt := quantize.Options{}
	name := shape + "-bf16"
	if format != "bf16" {
		spec, err := syntheticSpec(format, group)
		if err != nil {
			return "", usagef("%v", err)
		}
		opt.Spec = spec
		name = fmt.Sprintf("%s-%s", shape, strings.ReplaceAll(spec.String(), " ", "-"))
		if headBits != 0 {
			hs := spec
			if spec.Format == quant.GPTQ || spec.Format == quant.EXL3 {
				hs.Bits = headBits
			}
			opt.Head = &hs
			name += fmt.Sprintf("-head%d", headBits)
		}
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
	if err := writeSynthetic(dir, cfg, opt, format != "bf16"); err != nil {
		return "", err
	}
	return dir, nil
}

// syntheticSpec is the format of a synthetic model: a quantize format with
// its group ("int4", 128), or "exl3" with K bits per weight in place of the
// group (exl3:3; 4 when none is given), 3INST codebook.
func syntheticSpec(format string, group int) (quant.Spec, error) {
	if format == "exl3" {
		if group == 0 || group == 128 { // --group's default
			group = 4
		}
		if group < 1 || group > quant.MaxTrellisBits {
			return quant.Spec{}, fmt.Errorf("exl3:%d: bits per weight must be 1 to %d", group, quant.MaxTrellisBits)
		}
		return quant.Spec{Format: quant.EXL3, Bits: group, Codebook: quant.Codebook3INST}, nil
	}
	spec, err := quant.ParseSpec(format, group, true)
	spec.MaxScale = true // random weights: the scale search would only cost time
	return spec, err
}

// tensorShape is one tensor a synthetic model stores.
type tensorShape struct {
	name  string
	shape []int
}

// syntheticTensors lists the tensors of a shapes configuration, in the
// Hugging Face layout the model loader reads.
func syntheticTensors(cfg map[string]any) []tensorShape {
	n := func(k string) int { return cfg[k].(int) }
	H, V, L := n("hidden_size"), n("vocab_size"), n("num_hidden_layers")
	ts := []tensorShape{{"model.embed_tokens.weight", []int{V, H}}}
	add := func(name string, shape ...int) { ts = append(ts, tensorShape{name, shape}) }
	ffn := func(p string, I int) {
		add(p+"gate_proj.weight", I, H)
		add(p+"up_proj.weight", I, H)
		add(p+"down_proj.weight", H, I)
	}
	attention := func(p string) {
		hd, nh, nkv := n("head_dim"), n("num_attention_heads"), n("num_key_value_heads")
		add(p+"self_attn.q_proj.weight", nh*hd, H)
		add(p+"self_attn.k_proj.weight", nkv*hd, H)
		add(p+"self_attn.v_proj.weight", nkv*hd, H)
		add(p+"self_attn.o_proj.weight", H, nh*hd)
	}
	arch := cfg["architectures"].([]string)[0]
	for l := range L {
		p := fmt.Sprintf("model.layers.%d.", l)
		add(p+"input_layernorm.weight", H)
		add(p+"post_attention_layernorm.weight", H)
		switch arch {
		case "LlamaForCausalLM":
			attention(p)
			ffn(p+"mlp.", n("intermediate_size"))
		case "MixtralForCausalLM":
			attention(p)
			I, E := n("intermediate_size"), n("num_local_experts")
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
			panic("syntheticTensors: architecture " + arch)
		}
	}
	add("model.norm.weight", H)
	if tied, _ := cfg["tie_word_embeddings"].(bool); !tied {
		add("lm_head.weight", V, H)
	}
	return ts
}

// writeSynthetic writes a random-weight model of configuration cfg into
// dir, straight in its final format (a 16-bit source of the large shapes
// would not fit on disk: GLM-4.7-Flash is 60 GB in BF16): when quantized is
// set, the tensors marlin quantize would quantize are quantized by
// round-to-nearest to opt.Spec (the head to opt.Head, untying a tied one,
// as marlin quantize does), everything else is BF16; EXL3 layers are
// random trellis codes (syntheticEXL3). Each other tensor's values depend
// only on its name, so every RTN format of a shape is the same model.
// Tensors are generated and quantized on every core and written in order.
func writeSynthetic(dir string, cfg map[string]any, opt quantize.Options, quantized bool) error {
	w, err := hf.NewWriter(dir, true)
	if err != nil {
		return err
	}
	defer w.Abort()
	full := map[string]any{"hidden_act": "silu", "rms_norm_eps": 1e-5, "bos_token_id": 1, "eos_token_id": 2,
		"torch_dtype": "bfloat16", "tie_word_embeddings": false, "attention_bias": false, "max_position_embeddings": 4096}
	for k, v := range cfg {
		full[k] = v
	}
	ts := syntheticTensors(cfg)
	if tied, _ := cfg["tie_word_embeddings"].(bool); tied && quantized && opt.Head != nil {
		ts = append(ts, tensorShape{"lm_head.weight", ts[0].shape}) // same values as the embedding
		full["tie_word_embeddings"] = false
	}
	specOf := func(t tensorShape) *quant.Spec {
		switch {
		case !quantized:
			return nil
		case t.name == "lm_head.weight":
			return opt.Head
		case quantize.Quantized(t.name, t.shape, false):
			return &opt.Spec
		}
		return nil
	}
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
				out, err := syntheticTensor(t, specOf(t))
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
	if quantized {
		qc := quantize.Config(opt)
		if opt.Spec.Format == quant.EXL3 {
			// the logical shapes of the layers stored padded to 128
			for _, t := range ts {
				if sp := specOf(t); sp != nil && (t.shape[0]%quant.EXL3Block != 0 || t.shape[1]%quant.EXL3Block != 0) {
					if qc.Shapes == nil {
						qc.Shapes = map[string][2]int{}
					}
					qc.Shapes[strings.TrimSuffix(t.name, ".weight")] = [2]int{t.shape[0], t.shape[1]}
				}
			}
		}
		full["quantization_config"] = qc.JSON()
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
// routing biases, from a generator seeded by the name (a tied head's by the
// embedding's), quantized to spec when it is set.
func syntheticTensor(t tensorShape, spec *quant.Spec) ([]safetensors.Tensor, error) {
	h := fnv.New64a()
	seedName := t.name
	if seedName == "lm_head.weight" {
		seedName = "model.embed_tokens.weight" // the same values when the head was tied
	}
	h.Write([]byte(seedName))
	rng := rand.New(rand.NewPCG(h.Sum64(), 7))
	if spec != nil && spec.Format == quant.EXL3 {
		return syntheticEXL3(t, *spec, rng), nil
	}
	if spec != nil && spec.Format == quant.GPTQ && len(t.shape) == 2 && seedName == t.name { // (a tied head: RTN of the embedding's values)
		return syntheticGPTQ(t, *spec, rng)
	}
	n := 1
	for _, d := range t.shape {
		n *= d
	}
	vals := make([]float32, n)
	switch { // (chosen once: a test per element cost ~13% of the generation)
	case strings.HasSuffix(t.name, "e_score_correction_bias"):
	case len(t.shape) == 1:
		for i := range vals {
			vals[i] = 1 + 0.1*(rng.Float32()-0.5)
		}
	default:
		for i := range vals {
			vals[i] = 0.07 * (rng.Float32() - 0.5)
		}
	}
	if spec != nil {
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

// syntheticGPTQ makes a random GPTQ weight of t's shape from random codes
// instead of quantizing random values (what RTN makes of the uniform
// values the other tensors hold: codes spread evenly over the range), at a
// fifth of the time: generating the GLM-4.7-Flash shape's 30 billion
// weights took minutes of every device call that measured it. Scales of
// standard deviation 0.02 for the weights (as the BF16 tensors'), ±5% from
// group to group; the zero point mid-range.
func syntheticGPTQ(t tensorShape, spec quant.Spec, rng *rand.Rand) ([]safetensors.Tensor, error) {
	out, in := t.shape[0], t.shape[1]
	group := spec.Group
	if group <= 0 {
		group = in
	}
	c := &quant.Codes{Format: quant.GPTQ, Out: out, In: in, Bits: spec.Bits, Group: group, Sym: spec.Sym, Q: make([]uint8, out*in)}
	if !spec.V2 {
		c.ZeroOffset = 1
	}
	levels := 1 << spec.Bits
	mask, per := uint64(levels-1), 64/spec.Bits
	for i := 0; i < len(c.Q); i += per {
		r := rng.Uint64()
		for j := i; j < min(i+per, len(c.Q)); j++ {
			c.Q[j], r = uint8(r&mask), r>>uint(spec.Bits)
		}
	}
	s := 0.02 / math.Sqrt(float64(levels*levels-1)/12) // uniform codes' spread
	groups := in / group
	c.Scales, c.Zeros = make([]float32, groups*out), make([]int32, groups*out)
	for i := range c.Scales {
		c.Scales[i] = dtype.F16ToF32(dtype.F32ToF16(float32(s * (0.95 + 0.1*rng.Float64()))))
		c.Zeros[i] = int32(levels / 2)
	}
	w, err := quant.Pack("", c)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", t.name, err)
	}
	prefix := strings.TrimSuffix(t.name, ".weight")
	w.Name = prefix
	return w.Tensors(prefix), nil
}

// syntheticEXL3 makes a random EXL3 weight of t's shape without a trellis
// search (which would take hours for the large shapes): every bit string
// is a valid tail-biting tile, so random trellis bytes decode to values of
// the codebook's spread (1.24 for 3INST); suh holds random signs and svh
// random signs times 0.016, so that the weights have about the standard
// deviation of the other synthetic matrices (0.02).
func syntheticEXL3(t tensorShape, spec quant.Spec, rng *rand.Rand) []safetensors.Tensor {
	prefix := strings.TrimSuffix(t.name, ".weight")
	w := &quant.Weight{Name: prefix, Format: quant.EXL3, Out: t.shape[0], In: t.shape[1], Bits: spec.Bits, Codebook: spec.Codebook}
	in, out := w.PaddedDims()
	w.Data = make([]byte, (in/16)*(out/16)*32*spec.Bits)
	for i := 0; i < len(w.Data); i += 8 {
		binary.LittleEndian.PutUint64(w.Data[i:], rng.Uint64())
	}
	signs := func(n int, mag float32) []byte {
		b := make([]byte, 2*n)
		for i := range n {
			v := mag
			if rng.IntN(2) == 0 {
				v = -v
			}
			binary.LittleEndian.PutUint16(b[2*i:], dtype.F32ToF16(v))
		}
		return b
	}
	w.Scales, w.Zeros = signs(in, 1), signs(out, 0.016)
	return w.Tensors(prefix)
}
