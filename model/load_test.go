package model_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/marlin-llm/marlin/backend/cpu"
	"github.com/marlin-llm/marlin/dtype"
	"github.com/marlin-llm/marlin/format/hf"
	"github.com/marlin-llm/marlin/format/safetensors"
	"github.com/marlin-llm/marlin/model"
)

const good = "../testdata/models/llama-mqa-f32-bias"

// rewrite copies the fixture into a temporary folder, letting edit change
// the config (as a map) and the tensors before they are written.
func rewrite(t *testing.T, edit func(cfg map[string]any, ts []safetensors.Tensor) []safetensors.Tensor) string {
	return rewriteFrom(t, good, edit)
}

func rewriteFrom(t *testing.T, good string, edit func(cfg map[string]any, ts []safetensors.Tensor) []safetensors.Tensor) string {
	t.Helper()
	ck, err := hf.Open(good)
	if err != nil {
		t.Fatal(err)
	}
	defer ck.Close()
	var ts []safetensors.Tensor
	for _, n := range ck.Names() {
		tt, _ := ck.Tensor(n)
		tt.Data = append([]byte(nil), tt.Data...)
		ts = append(ts, tt)
	}
	raw, _ := os.ReadFile(filepath.Join(good, "config.json"))
	var cfg map[string]any
	json.Unmarshal(raw, &cfg)
	ts = edit(cfg, ts)
	dir := filepath.Join(t.TempDir(), "m")
	w, err := hf.NewWriter(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range ts {
		if err := w.AddTensor(tt); err != nil {
			t.Fatal(err)
		}
	}
	b, _ := json.Marshal(cfg)
	w.WriteFile("config.json", b)
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	return dir
}

func drop(ts []safetensors.Tensor, name string) []safetensors.Tensor {
	var out []safetensors.Tensor
	for _, t := range ts {
		if t.Name != name {
			out = append(out, t)
		}
	}
	return out
}

// TestBadCheckpoints: every broken checkpoint gives an error that names
// what is wrong, never a panic.
func TestBadCheckpoints(t *testing.T) {
	cases := []struct {
		name, want string
		edit       func(cfg map[string]any, ts []safetensors.Tensor) []safetensors.Tensor
	}{
		{"unknown architecture", `unsupported architecture "FooForCausalLM"`, func(c map[string]any, ts []safetensors.Tensor) []safetensors.Tensor {
			c["architectures"] = []string{"FooForCausalLM"}
			return ts
		}},
		{"no architecture", "names no architecture", func(c map[string]any, ts []safetensors.Tensor) []safetensors.Tensor {
			delete(c, "architectures")
			return ts
		}},
		{"missing tensor", "model.layers.1.mlp.up_proj", func(c map[string]any, ts []safetensors.Tensor) []safetensors.Tensor {
			return drop(ts, "model.layers.1.mlp.up_proj.weight")
		}},
		{"missing norm", "missing tensor model.norm.weight", func(c map[string]any, ts []safetensors.Tensor) []safetensors.Tensor {
			return drop(ts, "model.norm.weight")
		}},
		{"wrong shape", "model.layers.0.self_attn.k_proj: shape", func(c map[string]any, ts []safetensors.Tensor) []safetensors.Tensor {
			for i := range ts {
				if ts[i].Name == "model.layers.0.self_attn.k_proj.weight" {
					ts[i].Shape = []int{ts[i].Shape[1], ts[i].Shape[0]}
				}
			}
			return ts
		}},
		{"config disagrees", "shape", func(c map[string]any, ts []safetensors.Tensor) []safetensors.Tensor {
			c["intermediate_size"] = 97
			return ts
		}},
		{"inconsistent heads", "inconsistent sizes", func(c map[string]any, ts []safetensors.Tensor) []safetensors.Tensor {
			c["num_key_value_heads"] = 4 // 6 heads are not a multiple
			return ts
		}},
		{"unsupported activation", `hidden_act "gelu"`, func(c map[string]any, ts []safetensors.Tensor) []safetensors.Tensor {
			c["hidden_act"] = "gelu"
			return ts
		}},
		{"unknown rope", "rope", func(c map[string]any, ts []safetensors.Tensor) []safetensors.Tensor {
			c["rope_parameters"] = map[string]any{"rope_type": "fancy", "rope_theta": 10000.0}
			return ts
		}},
		{"integer norm", "model.layers.0.input_layernorm.weight", func(c map[string]any, ts []safetensors.Tensor) []safetensors.Tensor {
			for i := range ts {
				if ts[i].Name == "model.layers.0.input_layernorm.weight" {
					ts[i].DType = dtype.I32
				}
			}
			return ts
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := rewrite(t, c.edit)
			m, err := model.Load(dir, cpu.New(1))
			if err == nil {
				m.Close()
				t.Fatalf("loaded; want an error mentioning %q", c.want)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q does not mention %q", err, c.want)
			}
		})
	}
}

// TestTruncatedCheckpoint: a weight file cut short is reported, not mapped.
func TestTruncatedCheckpoint(t *testing.T) {
	dir := rewrite(t, func(c map[string]any, ts []safetensors.Tensor) []safetensors.Tensor { return ts })
	p := filepath.Join(dir, "model.safetensors")
	st, _ := os.Stat(p)
	if err := os.Truncate(p, st.Size()-100); err != nil {
		t.Fatal(err)
	}
	if _, err := model.Load(dir, cpu.New(1)); err == nil || !strings.Contains(err.Error(), "model.safetensors") {
		t.Fatalf("truncated file: error %v", err)
	}
}

// copyGPTQ copies a GPTQ fixture, letting edit change its config and tensors.
func copyGPTQ(t *testing.T, edit func(cfg map[string]any, ts []safetensors.Tensor) []safetensors.Tensor) string {
	return rewriteFrom(t, "../testdata/gptq/int4-asym-g32-actorder", edit)
}

// TestBadGPTQCheckpoints: malformed GPTQ checkpoints give an error naming
// the tensor or the setting at fault, never a panic.
func TestBadGPTQCheckpoints(t *testing.T) {
	qcfg := func(c map[string]any) map[string]any { return c["quantization_config"].(map[string]any) }
	edit := func(name string, f func(t *safetensors.Tensor)) func(map[string]any, []safetensors.Tensor) []safetensors.Tensor {
		return func(c map[string]any, ts []safetensors.Tensor) []safetensors.Tensor {
			for i := range ts {
				if ts[i].Name == name {
					f(&ts[i])
				}
			}
			return ts
		}
	}
	cases := []struct {
		name, want string
		edit       func(map[string]any, []safetensors.Tensor) []safetensors.Tensor
	}{
		{"bits 5", "5", func(c map[string]any, ts []safetensors.Tensor) []safetensors.Tensor {
			qcfg(c)["bits"] = 5
			return ts
		}},
		{"group does not divide", "group", func(c map[string]any, ts []safetensors.Tensor) []safetensors.Tensor {
			qcfg(c)["group_size"] = 48
			return ts
		}},
		{"inconsistent qweight", "model.layers.0.mlp.up_proj", edit("model.layers.0.mlp.up_proj.qweight", func(t *safetensors.Tensor) {
			t.Shape = []int{t.Shape[0] / 2, t.Shape[1]}
			t.Data = t.Data[:len(t.Data)/2]
		})},
		{"scales of the wrong shape", "model.layers.1.self_attn.o_proj", edit("model.layers.1.self_attn.o_proj.scales", func(t *safetensors.Tensor) {
			t.Shape = []int{t.Shape[0] - 1, t.Shape[1]}
			t.Data = t.Data[:len(t.Data)-2*t.Shape[1]]
		})},
		{"g_idx out of range", "model.layers.0.self_attn.q_proj", edit("model.layers.0.self_attn.q_proj.g_idx", func(t *safetensors.Tensor) {
			t.Data[4] = 99
		})},
		{"missing qzeros", "model.layers.0.self_attn.k_proj", func(c map[string]any, ts []safetensors.Tensor) []safetensors.Tensor {
			return drop(ts, "model.layers.0.self_attn.k_proj.qzeros")
		}},
		{"unknown method", "quant", func(c map[string]any, ts []safetensors.Tensor) []safetensors.Tensor {
			qcfg(c)["quant_method"] = "mystery"
			return ts
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := copyGPTQ(t, c.edit)
			m, err := model.Load(dir, cpu.New(1))
			if err == nil {
				m.Close()
				t.Fatalf("loaded; want an error mentioning %q", c.want)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q does not mention %q", err, c.want)
			}
			t.Log(err)
		})
	}
}
