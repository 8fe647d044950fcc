package hf

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/marlin-llm/marlin/dtype"
)

// Config is a typed view of a model's config.json as transformers 5 defines
// it for LlamaForCausalLM, Qwen3ForCausalLM, MixtralForCausalLM,
// Qwen3MoeForCausalLM, Glm4MoeLiteForCausalLM and DeepseekV3ForCausalLM
// (and older files written by transformers 4).
//
// Fields are exactly what the file says, with no architecture defaults
// applied: a pointer (or nil slice) is nil when the key is absent or null,
// so that callers can apply the defaults of the model class; plain values are
// zero when absent. The helper methods (KVHeads, HeadDimension, Experts, ...)
// apply the common defaults. Raw keeps every key, typed or not.
type Config struct {
	Architectures []string // "LlamaForCausalLM", ...
	ModelType     string   // "llama", "qwen3", "mixtral", "qwen3_moe", "glm4_moe_lite", "deepseek_v3", ...

	VocabSize             int
	HiddenSize            int
	IntermediateSize      int // dense MLP width
	NumHiddenLayers       int
	NumAttentionHeads     int
	NumKeyValueHeads      *int // nil: same as NumAttentionHeads
	HeadDim               *int // nil: HiddenSize / NumAttentionHeads
	HiddenAct             string
	MaxPositionEmbeddings int
	RMSNormEps            *float64
	TieWordEmbeddings     *bool
	AttentionBias         *bool
	MLPBias               *bool

	BOSTokenID *int
	EOSTokenID []int // an integer or a list in the file; nil when absent or null
	PadTokenID *int

	// DType is the weights' dtype as transformers names it ("bfloat16",
	// "float16", "float32"): "dtype" (transformers 5) or else "torch_dtype".
	DType string

	PartialRotaryFactor *float64
	// RoPE, as written: transformers 4 writes rope_theta and rope_scaling,
	// transformers 5 writes rope_parameters. Use Rope to get them merged.
	RopeTheta      *float64
	RopeScaling    json.RawMessage // an object, or nil when absent or null
	RopeParameters json.RawMessage // an object, or nil when absent or null

	// Mixture of experts.
	NumLocalExperts     *int // Mixtral (and the transformers 5 name for Qwen3-MoE)
	NumExperts          *int // Qwen3-MoE
	NumExpertsPerTok    *int
	MoEIntermediateSize *int
	NormTopKProb        *bool
	DecoderSparseStep   *int  // Qwen3-MoE: every n-th layer is sparse
	MLPOnlyLayers       []int // Qwen3-MoE: layers with a dense MLP
	NRoutedExperts      *int  // DeepSeek-V3, GLM-4-MoE-Lite
	NSharedExperts      *int
	RoutedScalingFactor *float64
	NGroup              *int
	TopKGroup           *int
	TopKMethod          string // "noaux_tc", "greedy", "group_limited_greedy"
	ScoringFunc         string // "sigmoid", "softmax"
	FirstKDenseReplace  *int
	MoELayerFreq        *int
	MLPLayerTypes       []string // GLM-4-MoE-Lite: "dense" or "sparse" per layer

	// Multi-head latent attention (DeepSeek-V3, GLM-4-MoE-Lite).
	QLoraRank      NullableInt // null means no query compression
	KVLoraRank     *int
	QKRopeHeadDim  *int
	QKNopeHeadDim  *int
	VHeadDim       *int
	RopeInterleave *bool

	// QuantizationConfig is the raw "quantization_config" object (nil when
	// absent or null).
	QuantizationConfig json.RawMessage

	// Raw holds every top-level key of the file.
	Raw map[string]json.RawMessage
}

// NullableInt is an integer field where absence and null mean different
// things.
type NullableInt struct {
	Present bool // the key is in the file
	Null    bool // its value is null
	Value   int  // its value when Present and not Null
}

// Set reports whether the field holds a number.
func (n NullableInt) Set() bool { return n.Present && !n.Null }

// ParseConfig parses the text of a config.json. Unknown fields are ignored
// (and kept in Raw); a known field of the wrong type, or a negative size, is
// an error naming the field.
func ParseConfig(data []byte) (*Config, error) {
	c, err := parseConfig(data)
	if err != nil {
		return nil, fmt.Errorf("hf: config: %w", err)
	}
	return c, nil
}

func parseConfig(data []byte) (*Config, error) {
	raw, err := decodeObject(data)
	if err != nil {
		return nil, err
	}
	f := &fields{raw: raw}
	c := &Config{Raw: raw}

	c.Architectures = f.strings("architectures")
	c.ModelType = f.string("model_type")
	c.VocabSize = f.int("vocab_size", true)
	c.HiddenSize = f.int("hidden_size", true)
	c.IntermediateSize = f.int("intermediate_size", true)
	c.NumHiddenLayers = f.int("num_hidden_layers", true)
	c.NumAttentionHeads = f.int("num_attention_heads", true)
	c.NumKeyValueHeads = f.intPtr("num_key_value_heads", true)
	c.HeadDim = f.intPtr("head_dim", true)
	c.HiddenAct = f.string("hidden_act")
	c.MaxPositionEmbeddings = f.int("max_position_embeddings", true)
	c.RMSNormEps = f.floatPtr("rms_norm_eps", true)
	c.TieWordEmbeddings = f.boolPtr("tie_word_embeddings")
	c.AttentionBias = f.boolPtr("attention_bias")
	c.MLPBias = f.boolPtr("mlp_bias")

	c.BOSTokenID = f.intPtr("bos_token_id", false)
	c.EOSTokenID = f.tokenIDs("eos_token_id")
	c.PadTokenID = f.intPtr("pad_token_id", false)

	c.DType = f.string("dtype")
	if torch := f.string("torch_dtype"); c.DType == "" {
		c.DType = torch
	}

	c.PartialRotaryFactor = f.floatPtr("partial_rotary_factor", true)
	c.RopeTheta = f.floatPtr("rope_theta", true)
	c.RopeScaling = f.object("rope_scaling")
	c.RopeParameters = f.object("rope_parameters")

	c.NumLocalExperts = f.intPtr("num_local_experts", true)
	c.NumExperts = f.intPtr("num_experts", true)
	c.NumExpertsPerTok = f.intPtr("num_experts_per_tok", true)
	c.MoEIntermediateSize = f.intPtr("moe_intermediate_size", true)
	c.NormTopKProb = f.boolPtr("norm_topk_prob")
	c.DecoderSparseStep = f.intPtr("decoder_sparse_step", true)
	c.MLPOnlyLayers = f.ints("mlp_only_layers", true)
	c.NRoutedExperts = f.intPtr("n_routed_experts", true)
	c.NSharedExperts = f.intPtr("n_shared_experts", true)
	c.RoutedScalingFactor = f.floatPtr("routed_scaling_factor", true)
	c.NGroup = f.intPtr("n_group", true)
	c.TopKGroup = f.intPtr("topk_group", true)
	c.TopKMethod = f.string("topk_method")
	c.ScoringFunc = f.string("scoring_func")
	c.FirstKDenseReplace = f.intPtr("first_k_dense_replace", true)
	c.MoELayerFreq = f.intPtr("moe_layer_freq", true)
	c.MLPLayerTypes = f.strings("mlp_layer_types")

	c.QLoraRank.Present = f.present("q_lora_rank")
	c.QLoraRank.Null = c.QLoraRank.Present && f.get("q_lora_rank") == nil
	if p := f.intPtr("q_lora_rank", true); p != nil {
		c.QLoraRank.Value = *p
	}
	c.KVLoraRank = f.intPtr("kv_lora_rank", true)
	c.QKRopeHeadDim = f.intPtr("qk_rope_head_dim", true)
	c.QKNopeHeadDim = f.intPtr("qk_nope_head_dim", true)
	c.VHeadDim = f.intPtr("v_head_dim", true)
	c.RopeInterleave = f.boolPtr("rope_interleave")

	c.QuantizationConfig = f.object("quantization_config")

	if f.err != nil {
		return nil, f.err
	}
	if c.PartialRotaryFactor != nil && (*c.PartialRotaryFactor <= 0 || *c.PartialRotaryFactor > 1) {
		return nil, fmt.Errorf("field \"partial_rotary_factor\": want a number in (0, 1], got %g", *c.PartialRotaryFactor)
	}
	return c, nil
}

// Architecture returns the first entry of "architectures" ("" when none).
func (c *Config) Architecture() string {
	if len(c.Architectures) == 0 {
		return ""
	}
	return c.Architectures[0]
}

// EOSTokenIDs returns the end-of-sequence token ids (config.json allows one
// or a list); nil when there are none.
func (c *Config) EOSTokenIDs() []int {
	if len(c.EOSTokenID) == 0 {
		return nil
	}
	return append([]int(nil), c.EOSTokenID...)
}

// KVHeads returns num_key_value_heads, or num_attention_heads when absent
// (the rule of every supported architecture).
func (c *Config) KVHeads() int {
	if c.NumKeyValueHeads != nil {
		return *c.NumKeyValueHeads
	}
	return c.NumAttentionHeads
}

// HeadDimension returns head_dim, or hidden_size / num_attention_heads when
// it is absent (0 when there are no heads). MLA models (DeepSeek-V3,
// GLM-4-MoE-Lite) describe their heads with the qk_*/v_head_dim fields
// instead.
func (c *Config) HeadDimension() int {
	if c.HeadDim != nil && *c.HeadDim > 0 {
		return *c.HeadDim
	}
	if c.NumAttentionHeads == 0 {
		return 0
	}
	return c.HiddenSize / c.NumAttentionHeads
}

// Experts returns the number of routed experts: num_local_experts,
// num_experts or n_routed_experts, whichever is present; 0 for a dense model.
func (c *Config) Experts() int {
	for _, p := range []*int{c.NumLocalExperts, c.NumExperts, c.NRoutedExperts} {
		if p != nil {
			return *p
		}
	}
	return 0
}

// TiedEmbeddings reports whether the output projection reuses the token
// embedding: tie_word_embeddings, false when absent (the default of every
// supported architecture).
func (c *Config) TiedEmbeddings() bool {
	return c.TieWordEmbeddings != nil && *c.TieWordEmbeddings
}

// QLoRARank returns the query compression rank of an MLA model and whether
// queries are compressed at all: the value when set, none when null, and the
// transformers class default when absent (1536 for deepseek_v3, 768 for
// glm4_moe_lite, none otherwise).
func (c *Config) QLoRARank() (int, bool) {
	switch {
	case c.QLoraRank.Set():
		return c.QLoraRank.Value, true
	case c.QLoraRank.Present: // null
		return 0, false
	case c.ModelType == "deepseek_v3":
		return 1536, true
	case c.ModelType == "glm4_moe_lite":
		return 768, true
	}
	return 0, false
}

// WeightDType maps DType ("bfloat16", "float16", "float32", ...) to a
// dtype.DType. It returns false when the config names none or one this
// package does not know.
func (c *Config) WeightDType() (dtype.DType, bool) {
	switch strings.TrimPrefix(c.DType, "torch.") {
	case "float32", "float":
		return dtype.F32, true
	case "float16", "half":
		return dtype.F16, true
	case "bfloat16":
		return dtype.BF16, true
	case "float64", "double":
		return dtype.F64, true
	case "float8_e4m3fn":
		return dtype.F8E4M3, true
	case "float8_e5m2":
		return dtype.F8E5M2, true
	}
	return dtype.Invalid, false
}

// GenerationConfig is a typed view of generation_config.json: the sampling
// defaults the model's authors recommend. Pointers are nil when the key is
// absent or null; Raw keeps every key.
type GenerationConfig struct {
	BOSTokenID        *int
	EOSTokenID        []int // an integer or a list in the file
	PadTokenID        *int
	Temperature       *float64
	TopP              *float64
	TopK              *int
	MinP              *float64
	RepetitionPenalty *float64
	DoSample          *bool
	MaxNewTokens      *int
	MaxLength         *int
	Raw               map[string]json.RawMessage
}

// ParseGenerationConfig parses the text of a generation_config.json. Unknown
// fields are ignored; a known field of the wrong type or a negative value is
// an error naming the field.
func ParseGenerationConfig(data []byte) (*GenerationConfig, error) {
	g, err := parseGenerationConfig(data)
	if err != nil {
		return nil, fmt.Errorf("hf: generation config: %w", err)
	}
	return g, nil
}

func parseGenerationConfig(data []byte) (*GenerationConfig, error) {
	raw, err := decodeObject(data)
	if err != nil {
		return nil, err
	}
	f := &fields{raw: raw}
	g := &GenerationConfig{Raw: raw}
	g.BOSTokenID = f.intPtr("bos_token_id", false)
	g.EOSTokenID = f.tokenIDs("eos_token_id")
	g.PadTokenID = f.intPtr("pad_token_id", false)
	g.Temperature = f.floatPtr("temperature", true)
	g.TopP = f.floatPtr("top_p", true)
	g.TopK = f.intPtr("top_k", true)
	g.MinP = f.floatPtr("min_p", true)
	g.RepetitionPenalty = f.floatPtr("repetition_penalty", true)
	g.DoSample = f.boolPtr("do_sample")
	g.MaxNewTokens = f.intPtr("max_new_tokens", true)
	g.MaxLength = f.intPtr("max_length", true)
	if f.err != nil {
		return nil, f.err
	}
	return g, nil
}

// EOSTokenIDs returns the end-of-sequence token ids; nil when there are none.
func (g *GenerationConfig) EOSTokenIDs() []int {
	if g == nil || len(g.EOSTokenID) == 0 {
		return nil
	}
	return append([]int(nil), g.EOSTokenID...)
}
