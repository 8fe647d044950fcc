package hf

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/marlin-llm/marlin/dtype"
)

// The configs under testdata/configs follow the published config.json files
// of the models they are named after (GLM-4-MoE-Lite shortened to 4 layers
// and written in the transformers 5 style).
func loadConfig(t *testing.T, name string) *Config {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "configs", name))
	if err != nil {
		t.Fatal(err)
	}
	c, err := ParseConfig(data)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return c
}

func eqInt(t *testing.T, what string, got *int, want int) {
	t.Helper()
	if got == nil || *got != want {
		t.Errorf("%s = %v, want %d", what, fmtPtr(got), want)
	}
}

func fmtPtr[T any](p *T) string {
	if p == nil {
		return "nil"
	}
	return fmt.Sprint(*p)
}

func TestParseConfigLlama(t *testing.T) {
	c := loadConfig(t, "llama3.1-8b.json")
	if c.Architecture() != "LlamaForCausalLM" || c.ModelType != "llama" {
		t.Errorf("architecture %q, model type %q", c.Architecture(), c.ModelType)
	}
	if c.VocabSize != 128256 || c.HiddenSize != 4096 || c.IntermediateSize != 14336 || c.NumHiddenLayers != 32 ||
		c.NumAttentionHeads != 32 || c.MaxPositionEmbeddings != 131072 || c.HiddenAct != "silu" {
		t.Errorf("sizes: %+v", c)
	}
	if c.KVHeads() != 8 || c.HeadDimension() != 128 || c.HeadDim != nil {
		t.Errorf("KVHeads %d, HeadDimension %d, HeadDim %s", c.KVHeads(), c.HeadDimension(), fmtPtr(c.HeadDim))
	}
	if c.RMSNormEps == nil || *c.RMSNormEps != 1e-5 || c.TiedEmbeddings() || c.MLPBias == nil || *c.MLPBias {
		t.Errorf("eps %s tied %v mlp_bias %s", fmtPtr(c.RMSNormEps), c.TiedEmbeddings(), fmtPtr(c.MLPBias))
	}
	if fmt.Sprint(c.EOSTokenIDs()) != "[128001 128008 128009]" {
		t.Errorf("EOS %v", c.EOSTokenIDs())
	}
	eqInt(t, "bos", c.BOSTokenID, 128000)
	if c.PadTokenID != nil {
		t.Errorf("pad = %d", *c.PadTokenID)
	}
	if d, ok := c.WeightDType(); !ok || d != dtype.BF16 {
		t.Errorf("WeightDType = %v, %v", d, ok)
	}
	r, err := c.Rope()
	if err != nil {
		t.Fatal(err)
	}
	want := Rope{Type: "llama3", Theta: 500000, PartialRotaryFactor: 1, Factor: 8, OriginalMaxPositionEmbeddings: 8192,
		OriginalMaxExplicit: true, LowFreqFactor: 1, HighFreqFactor: 4, BetaFast: 32, BetaSlow: 1}
	if fmt.Sprintf("%+v", r) != fmt.Sprintf("%+v", want) {
		t.Errorf("Rope =\n%+v\nwant\n%+v", r, want)
	}
	if c.Experts() != 0 || c.QuantizationConfig != nil {
		t.Errorf("Experts %d, quantization %s", c.Experts(), c.QuantizationConfig)
	}
	if string(c.Raw["pretraining_tp"]) != "1" {
		t.Errorf("Raw[pretraining_tp] = %s", c.Raw["pretraining_tp"])
	}
}

func TestParseConfigQwen3(t *testing.T) {
	c := loadConfig(t, "qwen3-8b.json")
	eqInt(t, "head_dim", c.HeadDim, 128)
	if c.HeadDimension() != 128 || c.KVHeads() != 8 || c.RopeScaling != nil {
		t.Errorf("head dim %d kv %d rope_scaling %s", c.HeadDimension(), c.KVHeads(), c.RopeScaling)
	}
	if fmt.Sprint(c.EOSTokenIDs()) != "[151645]" {
		t.Errorf("EOS %v", c.EOSTokenIDs())
	}
	r, err := c.Rope()
	if err != nil || r.Type != "default" || r.Theta != 1e6 || r.Factor != 1 || r.OriginalMaxPositionEmbeddings != 0 {
		t.Errorf("Rope = %+v, %v", r, err)
	}
}

func TestParseConfigMixtral(t *testing.T) {
	c := loadConfig(t, "mixtral-8x7b.json")
	eqInt(t, "num_local_experts", c.NumLocalExperts, 8)
	eqInt(t, "num_experts_per_tok", c.NumExpertsPerTok, 2)
	if c.Experts() != 8 || c.AttentionBias != nil {
		t.Errorf("Experts %d attention_bias %s", c.Experts(), fmtPtr(c.AttentionBias))
	}
	// Without any theta Mixtral's class default applies.
	delete(c.Raw, "rope_theta")
	c.RopeTheta = nil
	if r, err := c.Rope(); err != nil || r.Theta != 1e6 {
		t.Errorf("default Mixtral theta: %+v, %v", r, err)
	}
}

func TestParseConfigQwen3Moe(t *testing.T) {
	c := loadConfig(t, "qwen3-30b-a3b.json")
	eqInt(t, "num_experts", c.NumExperts, 128)
	eqInt(t, "moe_intermediate_size", c.MoEIntermediateSize, 768)
	eqInt(t, "decoder_sparse_step", c.DecoderSparseStep, 1)
	if c.Experts() != 128 || c.NormTopKProb == nil || !*c.NormTopKProb || c.MLPOnlyLayers == nil || len(c.MLPOnlyLayers) != 0 {
		t.Errorf("Experts %d norm_topk_prob %s mlp_only_layers %#v", c.Experts(), fmtPtr(c.NormTopKProb), c.MLPOnlyLayers)
	}
}

func TestParseConfigDeepseekV3(t *testing.T) {
	c := loadConfig(t, "deepseek-v3.json")
	eqInt(t, "n_routed_experts", c.NRoutedExperts, 256)
	eqInt(t, "n_shared_experts", c.NSharedExperts, 1)
	eqInt(t, "n_group", c.NGroup, 8)
	eqInt(t, "topk_group", c.TopKGroup, 4)
	eqInt(t, "first_k_dense_replace", c.FirstKDenseReplace, 3)
	eqInt(t, "moe_layer_freq", c.MoELayerFreq, 1)
	eqInt(t, "kv_lora_rank", c.KVLoraRank, 512)
	eqInt(t, "qk_rope_head_dim", c.QKRopeHeadDim, 64)
	eqInt(t, "qk_nope_head_dim", c.QKNopeHeadDim, 128)
	eqInt(t, "v_head_dim", c.VHeadDim, 128)
	if c.TopKMethod != "noaux_tc" || c.ScoringFunc != "sigmoid" || c.RoutedScalingFactor == nil || *c.RoutedScalingFactor != 2.5 {
		t.Errorf("topk_method %q scoring %q scaling %s", c.TopKMethod, c.ScoringFunc, fmtPtr(c.RoutedScalingFactor))
	}
	if r, ok := c.QLoRARank(); !ok || r != 1536 || !c.QLoraRank.Set() {
		t.Errorf("QLoRARank = %d, %v", r, ok)
	}
	if c.RopeInterleave != nil {
		t.Errorf("rope_interleave = %v, want absent", *c.RopeInterleave)
	}
	var q struct {
		QuantMethod string `json:"quant_method"`
		BlockSize   []int  `json:"weight_block_size"`
	}
	if err := json.Unmarshal(c.QuantizationConfig, &q); err != nil || q.QuantMethod != "fp8" || fmt.Sprint(q.BlockSize) != "[128 128]" {
		t.Errorf("quantization_config %s: %+v %v", c.QuantizationConfig, q, err)
	}
	r, err := c.Rope()
	if err != nil {
		t.Fatal(err)
	}
	if r.Type != "yarn" || r.Theta != 10000 || r.Factor != 40 || r.MScale != 1 || r.MScaleAllDim != 1 ||
		r.BetaFast != 32 || r.BetaSlow != 1 || r.OriginalMaxPositionEmbeddings != 4096 || r.AttentionFactor != nil {
		t.Errorf("Rope = %+v", r)
	}

	// q_lora_rank: absent → the class default, null → no compression.
	for _, tc := range []struct {
		json string
		rank int
		ok   bool
	}{
		{`{"model_type":"deepseek_v3"}`, 1536, true},
		{`{"model_type":"deepseek_v3","q_lora_rank":null}`, 0, false},
		{`{"model_type":"glm4_moe_lite"}`, 768, true},
		{`{"model_type":"deepseek_v2","q_lora_rank":null}`, 0, false},
		{`{"model_type":"llama"}`, 0, false},
		{`{"q_lora_rank":64}`, 64, true},
	} {
		c, err := ParseConfig([]byte(tc.json))
		if err != nil {
			t.Fatal(err)
		}
		if r, ok := c.QLoRARank(); r != tc.rank || ok != tc.ok {
			t.Errorf("%s: QLoRARank = %d, %v; want %d, %v", tc.json, r, ok, tc.rank, tc.ok)
		}
	}
}

func TestParseConfigGlm4MoeLite(t *testing.T) {
	c := loadConfig(t, "glm4-moe-lite.json")
	if c.DType != "bfloat16" || fmt.Sprint(c.MLPLayerTypes) != "[dense sparse sparse sparse]" {
		t.Errorf("dtype %q mlp_layer_types %v", c.DType, c.MLPLayerTypes)
	}
	if c.RopeInterleave == nil || !*c.RopeInterleave || c.Experts() != 64 {
		t.Errorf("rope_interleave %s experts %d", fmtPtr(c.RopeInterleave), c.Experts())
	}
	eqInt(t, "pad", c.PadTokenID, 154820)
	if len(c.EOSTokenIDs()) != 3 {
		t.Errorf("EOS %v", c.EOSTokenIDs())
	}
	r, err := c.Rope()
	if err != nil || r.Type != "default" || r.Theta != 1e6 || r.PartialRotaryFactor != 1 {
		t.Errorf("Rope = %+v, %v", r, err)
	}
}

func TestRope(t *testing.T) {
	cases := []struct {
		name, json string
		want       string // fmt %+v of selected fields, or the error text
	}{
		{"none", `{}`, "default 10000 1"},
		{"theta only", `{"rope_theta":1e6}`, "default 1e+06 1"},
		{"rope_scaling null", `{"rope_theta":5e5,"rope_scaling":null}`, "default 500000 1"},
		{"linear", `{"rope_scaling":{"type":"linear","factor":2}}`, "linear 10000 2"},
		{"dynamic", `{"rope_scaling":{"rope_type":"dynamic","factor":4.0},"rope_theta":1e4}`, "dynamic 10000 4"},
		{"v5 parameters", `{"rope_parameters":{"rope_type":"yarn","rope_theta":1e6,"factor":4,"original_max_position_embeddings":32768}}`, "yarn 1e+06 4"},
		{"v5 theta inside wins", `{"rope_theta":1,"rope_parameters":{"rope_type":"default","rope_theta":5}}`, "default 5 1"},
		{"rope_scaling wins over rope_parameters", `{"rope_scaling":{"type":"linear","factor":3},"rope_parameters":{"rope_type":"default"}}`, "linear 10000 3"},
		{"empty rope_scaling falls through", `{"rope_scaling":{},"rope_parameters":{"rope_type":"linear","factor":5}}`, "linear 10000 5"},
		{"rope_type beats type", `{"rope_scaling":{"type":"linear","rope_type":"dynamic","factor":2}}`, "dynamic 10000 2"},
		{"unknown type", `{"rope_scaling":{"type":"fancy","factor":2}}`, `rope_scaling: unknown rope type "fancy"`},
		{"missing factor", `{"rope_scaling":{"rope_type":"linear"}}`, `rope type "linear" needs "factor"`},
		{"llama3 needs freq factors", `{"rope_scaling":{"rope_type":"llama3","factor":8}}`, `needs "low_freq_factor"`},
		{"longrope needs factors", `{"rope_parameters":{"rope_type":"longrope"}}`, `needs "short_factor"`},
		{"factor wrong type", `{"rope_scaling":{"rope_type":"linear","factor":"2"}}`, `field "rope_scaling.factor": want a non-negative number, got the string "2"`},
		{"type wrong type", `{"rope_scaling":{"rope_type":3}}`, `field "rope_scaling.rope_type": want a string`},
		{"zero theta", `{"rope_theta":0}`, "rope_theta must be positive"},
		{"zero factor", `{"rope_scaling":{"type":"linear","factor":0}}`, "factor must be positive"},
		{"nested", `{"rope_parameters":{"full_attention":{"rope_type":"default","rope_theta":1e6},"sliding_attention":{"rope_type":"default","rope_theta":1e4}}}`, "per layer type (full_attention, sliding_attention): use RopeFor"},
		{"partial", `{"partial_rotary_factor":0.5,"rope_theta":1e4}`, "default 10000 1"},
	}
	for _, c := range cases {
		cfg, err := ParseConfig([]byte(c.json))
		if err != nil {
			t.Errorf("%s: ParseConfig: %v", c.name, err)
			continue
		}
		r, err := cfg.Rope()
		got := fmt.Sprintf("%s %g %g", r.Type, r.Theta, r.Factor)
		if err != nil {
			got = err.Error()
		}
		if !strings.Contains(got, c.want) {
			t.Errorf("%s: got %q, want %q", c.name, got, c.want)
		}
	}

	cfg, _ := ParseConfig([]byte(`{"partial_rotary_factor":0.5,"rope_parameters":{"rope_type":"default"}}`))
	if r, _ := cfg.Rope(); r.PartialRotaryFactor != 0.5 {
		t.Errorf("partial rotary factor %g", r.PartialRotaryFactor)
	}
	cfg, _ = ParseConfig([]byte(`{"max_position_embeddings":4096,"rope_parameters":{"rope_type":"yarn","factor":4}}`))
	if r, _ := cfg.Rope(); r.OriginalMaxPositionEmbeddings != 4096 || r.OriginalMaxExplicit {
		t.Errorf("yarn original max defaulted: %+v", r)
	}
	cfg, _ = ParseConfig([]byte(`{"original_max_position_embeddings":4096,"max_position_embeddings":131072,"rope_scaling":{"type":"longrope","short_factor":[1,1],"long_factor":[2,2.5],"original_max_position_embeddings":8192}}`))
	if r, err := cfg.Rope(); err != nil || r.OriginalMaxPositionEmbeddings != 4096 || fmt.Sprint(r.LongFactor) != "[2 2.5]" {
		t.Errorf("longrope: %+v, %v", r, err)
	}
	cfg, _ = ParseConfig([]byte(`{"rope_parameters":{"full_attention":{"rope_type":"linear","factor":8},"sliding_attention":{"rope_type":"default","rope_theta":1e4}},"rope_theta":1e6}`))
	if r, err := cfg.RopeFor("full_attention"); err != nil || r.Type != "linear" || r.Factor != 8 || r.Theta != 1e6 {
		t.Errorf("RopeFor(full_attention) = %+v, %v", r, err)
	}
	if r, err := cfg.RopeFor("sliding_attention"); err != nil || r.Theta != 1e4 {
		t.Errorf("RopeFor(sliding_attention) = %+v, %v", r, err)
	}
	if _, err := cfg.RopeFor("chunked_attention"); err == nil {
		t.Error("RopeFor of a missing layer type succeeded")
	}
}

func TestParseConfigErrors(t *testing.T) {
	cases := []struct{ json, want string }{
		{``, "empty"},
		{`   `, "empty"},
		{`{"hidden_size":4096,}`, "invalid JSON at line 1"},
		{"{\n\"a\": 1\n\"b\": 2}", "invalid JSON at line 3"},
		{`[1,2]`, "want a JSON object, got a list"},
		{`null`, "want a JSON object, got null"},
		{`"x"`, "want a JSON object"},
		{`{"hidden_size":"4096"}`, `field "hidden_size": want a non-negative integer, got the string "4096"`},
		{`{"hidden_size":-1}`, `field "hidden_size": want a non-negative integer, got -1`},
		{`{"vocab_size":1.5}`, `field "vocab_size": want a non-negative integer, got 1.5`},
		{`{"num_hidden_layers":1e300}`, `field "num_hidden_layers"`},
		{`{"num_key_value_heads":-8}`, `field "num_key_value_heads"`},
		{`{"moe_intermediate_size":-1}`, `field "moe_intermediate_size"`},
		{`{"q_lora_rank":"big"}`, `field "q_lora_rank"`},
		{`{"architectures":"LlamaForCausalLM"}`, `field "architectures": want a list of strings`},
		{`{"model_type":3}`, `field "model_type": want a string, got 3`},
		{`{"tie_word_embeddings":"true"}`, `field "tie_word_embeddings": want true or false`},
		{`{"rms_norm_eps":"1e-6"}`, `field "rms_norm_eps": want a non-negative number`},
		{`{"rms_norm_eps":-1e-6}`, `field "rms_norm_eps"`},
		{`{"eos_token_id":"2"}`, `field "eos_token_id": want an integer or a list of integers`},
		{`{"eos_token_id":[1,"2"]}`, `field "eos_token_id[1]": want an integer`},
		{`{"mlp_only_layers":[1,-2]}`, `field "mlp_only_layers[1]"`},
		{`{"mlp_layer_types":[1]}`, `field "mlp_layer_types"`},
		{`{"rope_scaling":[1]}`, `field "rope_scaling": want an object`},
		{`{"rope_parameters":"yarn"}`, `field "rope_parameters": want an object`},
		{`{"quantization_config":true}`, `field "quantization_config": want an object`},
		{`{"torch_dtype":16}`, `field "torch_dtype"`},
		{`{"partial_rotary_factor":2}`, `field "partial_rotary_factor": want a number in (0, 1]`},
	}
	for _, c := range cases {
		_, err := ParseConfig([]byte(c.json))
		if err == nil {
			t.Errorf("%s: no error, want %q", c.json, c.want)
			continue
		}
		if !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), "hf: config: ") {
			t.Errorf("%s: error %q, want it to contain %q", c.json, err, c.want)
		}
	}
}

func TestParseConfigLenient(t *testing.T) {
	c, err := ParseConfig([]byte(`{"hidden_size":4096.0,"eos_token_id":null,"pad_token_id":-1,"unknown":{"x":[1]},"num_key_value_heads":null,"dtype":"float16","torch_dtype":"float32"}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.HiddenSize != 4096 || c.EOSTokenIDs() != nil || c.PadTokenID == nil || *c.PadTokenID != -1 || c.NumKeyValueHeads != nil {
		t.Errorf("%+v", c)
	}
	if d, ok := c.WeightDType(); !ok || d != dtype.F16 {
		t.Errorf("dtype wins over torch_dtype: %v %v", d, ok)
	}
	if string(c.Raw["unknown"]) != `{"x":[1]}` {
		t.Errorf("Raw[unknown] = %s", c.Raw["unknown"])
	}
	c.NumAttentionHeads = 0
	if c.HeadDimension() != 0 {
		t.Error("HeadDimension with no heads")
	}
}

func TestParseGenerationConfig(t *testing.T) {
	g, err := ParseGenerationConfig([]byte(`{"bos_token_id":1,"eos_token_id":[2,3],"pad_token_id":0,"temperature":0.6,"top_p":0.95,"top_k":20,"min_p":0,"repetition_penalty":1.1,"do_sample":true,"max_new_tokens":256,"transformers_version":"4.51.0"}`))
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(g.EOSTokenIDs()) != "[2 3]" || *g.BOSTokenID != 1 || *g.PadTokenID != 0 || *g.Temperature != 0.6 ||
		*g.TopP != 0.95 || *g.TopK != 20 || *g.MinP != 0 || *g.RepetitionPenalty != 1.1 || !*g.DoSample || *g.MaxNewTokens != 256 || g.MaxLength != nil {
		t.Errorf("%+v", g)
	}
	g, err = ParseGenerationConfig([]byte(`{"eos_token_id":7}`))
	if err != nil || fmt.Sprint(g.EOSTokenIDs()) != "[7]" || g.Temperature != nil {
		t.Errorf("%+v %v", g, err)
	}
	for _, c := range []struct{ json, want string }{
		{`{"temperature":"hot"}`, `field "temperature"`},
		{`{"top_k":-1}`, `field "top_k"`},
		{`{"do_sample":1}`, `field "do_sample"`},
		{`{"max_new_tokens":1.5}`, `field "max_new_tokens"`},
		{`[]`, "want a JSON object"},
	} {
		if _, err := ParseGenerationConfig([]byte(c.json)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.json, err, c.want)
		}
	}
	var nilg *GenerationConfig
	if nilg.EOSTokenIDs() != nil {
		t.Error("nil GenerationConfig EOS")
	}
}

// TestRopeString: the summary names the type, the base and the parameters
// that type uses, and leaves out the defaults.
func TestRopeString(t *testing.T) {
	for _, tc := range []struct{ cfg, want string }{
		{`{"rope_theta": 10000}`, "default, theta 10000"},
		{`{"rope_theta": 500000, "max_position_embeddings": 131072, "rope_scaling": {"rope_type": "llama3", "factor": 8, "low_freq_factor": 1, "high_freq_factor": 4, "original_max_position_embeddings": 8192}}`,
			"llama3, theta 500000, factor 8, original context 8192, low/high frequency factors 1/4"},
		{`{"rope_theta": 10000, "max_position_embeddings": 163840, "rope_scaling": {"type": "yarn", "factor": 40, "original_max_position_embeddings": 4096, "mscale": 1, "mscale_all_dim": 1}}`,
			"yarn, theta 10000, factor 40, original context 4096, beta fast/slow 32/1, mscale 1/1"},
	} {
		c, err := ParseConfig([]byte(tc.cfg))
		if err != nil {
			t.Fatal(err)
		}
		r, err := c.Rope()
		if err != nil {
			t.Fatalf("%s: %v", tc.cfg, err)
		}
		if got := r.String(); got != tc.want {
			t.Errorf("%s:\n got %q\nwant %q", tc.cfg, got, tc.want)
		}
	}
}
