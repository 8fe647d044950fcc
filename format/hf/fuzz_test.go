package hf

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzParseConfig checks that ParseConfig, ParseGenerationConfig and the
// Config helpers never panic, whatever the input.
func FuzzParseConfig(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "configs", "*.json"))
	for _, p := range files {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	for _, s := range []string{
		`{}`, `null`, `[]`, `{"eos_token_id":[1,2]}`, `{"hidden_size":-1}`, `{"q_lora_rank":null}`,
		`{"rope_scaling":{"type":"yarn","factor":4,"beta_fast":0}}`,
		`{"rope_parameters":{"full_attention":{"rope_type":"linear","factor":2}},"layer_types":["full_attention"]}`,
		`{"rope_parameters":{"rope_type":"longrope","short_factor":[1],"long_factor":[2]},"original_max_position_embeddings":"x"}`,
		`{"num_attention_heads":0,"hidden_size":5,"head_dim":0}`,
		`{"temperature":0.7,"top_k":20,"eos_token_id":2}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if g, err := ParseGenerationConfig(data); err == nil {
			_ = g.EOSTokenIDs()
		}
		c, err := ParseConfig(data)
		if err != nil {
			return
		}
		_, _ = c.Rope()
		_, _ = c.RopeFor("full_attention")
		_, _ = c.RopeFor("sliding_attention")
		_ = c.EOSTokenIDs()
		_ = c.KVHeads()
		_ = c.HeadDimension()
		_ = c.Experts()
		_ = c.TiedEmbeddings()
		_ = c.Architecture()
		_, _ = c.QLoRARank()
		_, _ = c.WeightDType()
		if c.Raw == nil {
			t.Fatal("accepted config without Raw")
		}
	})
}
