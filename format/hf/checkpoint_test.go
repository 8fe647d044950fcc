package hf

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/marlin-llm/marlin/dtype"
	"github.com/marlin-llm/marlin/format/safetensors"
	"github.com/marlin-llm/marlin/internal/shared"
)

// sharedData returns ../shared/data, or skips the test when it is absent.
func sharedData(t *testing.T) string { return shared.Data(t) }

func tinyStories(t *testing.T) string {
	return filepath.Join(sharedData(t), "models", "tinystories-656k")
}

func shapeOf(t *testing.T, c *Checkpoint, name string) string {
	t.Helper()
	x, ok := c.Tensor(name)
	if !ok {
		t.Fatalf("tensor %q missing", name)
	}
	return fmt.Sprint(x.Shape)
}

// TestTinyStories opens a real checkpoint written by Python safetensors and
// checks its tensors against its config.
func TestTinyStories(t *testing.T) {
	c, err := Open(tinyStories(t))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cfg := c.Config
	if cfg.Architecture() != "LlamaForCausalLM" || cfg.HiddenSize != 128 || cfg.NumHiddenLayers != 2 ||
		cfg.NumAttentionHeads != 8 || cfg.KVHeads() != 4 || cfg.VocabSize != 2048 || !cfg.TiedEmbeddings() {
		t.Fatalf("config: %+v", cfg)
	}
	if c.Generation == nil || fmt.Sprint(c.Generation.EOSTokenIDs()) != "[2]" || *c.Generation.BOSTokenID != 1 {
		t.Errorf("generation config: %+v", c.Generation)
	}
	r, err := cfg.Rope()
	if err != nil || r.Type != "default" || r.Theta != 10000 {
		t.Errorf("Rope = %+v, %v", r, err)
	}
	h, hd, inter, v := cfg.HiddenSize, cfg.HeadDimension(), cfg.IntermediateSize, cfg.VocabSize
	want := map[string]string{
		"model.embed_tokens.weight": fmt.Sprint([]int{v, h}), // an alias of lm_head.weight
		"lm_head.weight":            fmt.Sprint([]int{v, h}),
		"model.norm.weight":         fmt.Sprint([]int{h}),
	}
	for i := 0; i < cfg.NumHiddenLayers; i++ {
		p := fmt.Sprintf("model.layers.%d.", i)
		want[p+"self_attn.q_proj.weight"] = fmt.Sprint([]int{cfg.NumAttentionHeads * hd, h})
		want[p+"self_attn.k_proj.weight"] = fmt.Sprint([]int{cfg.KVHeads() * hd, h})
		want[p+"self_attn.v_proj.weight"] = fmt.Sprint([]int{cfg.KVHeads() * hd, h})
		want[p+"self_attn.o_proj.weight"] = fmt.Sprint([]int{h, cfg.NumAttentionHeads * hd})
		want[p+"mlp.gate_proj.weight"] = fmt.Sprint([]int{inter, h})
		want[p+"mlp.up_proj.weight"] = fmt.Sprint([]int{inter, h})
		want[p+"mlp.down_proj.weight"] = fmt.Sprint([]int{h, inter})
		want[p+"input_layernorm.weight"] = fmt.Sprint([]int{h})
		want[p+"post_attention_layernorm.weight"] = fmt.Sprint([]int{h})
	}
	for name, shape := range want {
		if got := shapeOf(t, c, name); got != shape {
			t.Errorf("%s: shape %s, want %s", name, got, shape)
		}
		x, _ := c.Tensor(name)
		if x.DType != dtype.F32 || x.Name != name {
			t.Errorf("%s: dtype %v name %q", name, x.DType, x.Name)
		}
	}
	if n := len(c.Names()); n != len(want)-1 {
		t.Errorf("%d stored tensors, want %d", n, len(want)-1)
	}
	if fmt.Sprint(c.Aliases()) != "map[model.embed_tokens.weight:lm_head.weight]" {
		t.Errorf("aliases %v", c.Aliases())
	}
	emb, _ := c.Tensor("model.embed_tokens.weight")
	head, _ := c.Tensor("lm_head.weight")
	if &emb.Data[0] != &head.Data[0] {
		t.Error("alias does not share the stored tensor's data")
	}
	if _, ok := c.Tensor("nope"); ok {
		t.Error("found a tensor that does not exist")
	}
	if info, ok := c.Info("lm_head.weight"); !ok || info.End-info.Begin != int64(v*h*4) {
		t.Errorf("Info = %+v, %v", info, ok)
	}
	if len(c.Files()) != 1 {
		t.Errorf("files %v", c.Files())
	}
}

// TestTinyStoriesRewrite copies the real checkpoint through the Writer into
// several shards and reads it back identical.
func TestTinyStoriesRewrite(t *testing.T) {
	src, err := Open(tinyStories(t))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	out := filepath.Join(t.TempDir(), "copy")
	w, err := NewWriter(out, false)
	if err != nil {
		t.Fatal(err)
	}
	w.ShardBytes = 600 << 10
	for _, name := range src.Names() {
		x, _ := src.Tensor(name)
		if err := w.AddTensor(x); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"} {
		if err := w.CopyFile(f, filepath.Join(src.Dir, f)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	dst, err := Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	if len(dst.Files()) < 3 {
		t.Errorf("%d shards, want several", len(dst.Files()))
	}
	if fmt.Sprint(dst.Names()) != fmt.Sprint(src.Names()) {
		t.Fatalf("names differ")
	}
	for _, name := range src.Names() {
		a, _ := src.Tensor(name)
		b, _ := dst.Tensor(name)
		if a.DType != b.DType || fmt.Sprint(a.Shape) != fmt.Sprint(b.Shape) || !bytes.Equal(a.Data, b.Data) {
			t.Errorf("%s differs", name)
		}
	}
	if dst.Config.VocabSize != 2048 || dst.Generation == nil {
		t.Errorf("config not copied")
	}
}

// randomTensors makes n tensors of random dtypes, shapes and bytes.
func randomTensors(rng *rand.Rand, n int) []safetensors.Tensor {
	types := []dtype.DType{dtype.F32, dtype.F16, dtype.BF16, dtype.F8E4M3, dtype.I32, dtype.U8, dtype.F64, dtype.I64}
	var ts []safetensors.Tensor
	for i := 0; i < n; i++ {
		d := types[rng.Intn(len(types))]
		shape := []int{1 + rng.Intn(40), 1 + rng.Intn(40)}
		data := make([]byte, shape[0]*shape[1]*d.Size())
		rng.Read(data)
		ts = append(ts, safetensors.Tensor{Name: fmt.Sprintf("model.layers.%d.weight", i), DType: d, Shape: shape, Data: data})
	}
	return ts
}

func writeModel(t *testing.T, dir string, shardBytes int64, ts []safetensors.Tensor) {
	t.Helper()
	w, err := NewWriter(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	w.ShardBytes = shardBytes
	for _, x := range ts {
		if err := w.AddTensor(x); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.WriteFile("config.json", []byte(`{"architectures":["LlamaForCausalLM"],"model_type":"llama"}`)); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
}

func TestRoundTrip(t *testing.T) {
	for _, shardBytes := range []int64{0, 1, 3000, 20000, DefaultShardBytes} {
		rng := rand.New(rand.NewSource(shardBytes))
		ts := randomTensors(rng, 25)
		dir := filepath.Join(t.TempDir(), "model")
		writeModel(t, dir, shardBytes, ts)

		var total int64
		for _, x := range ts {
			total += int64(len(x.Data))
		}
		entries, _ := os.ReadDir(dir)
		var files []string
		for _, e := range entries {
			files = append(files, e.Name())
		}
		single := shardBytes <= 0 || shardBytes >= total
		if single {
			if fmt.Sprint(files) != "[config.json model.safetensors]" {
				t.Errorf("shard %d: files %v", shardBytes, files)
			}
		} else {
			idx := readIndexFile(t, dir)
			if idx.Metadata["total_size"] != total {
				t.Errorf("shard %d: total_size %d, want %d", shardBytes, idx.Metadata["total_size"], total)
			}
			n := len(files) - 2
			for i := 1; i <= n; i++ {
				name := fmt.Sprintf("model-%05d-of-%05d.safetensors", i, n)
				if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
					t.Errorf("shard %d: %v (files %v)", shardBytes, err, files)
				}
			}
			if len(idx.WeightMap) != len(ts) {
				t.Errorf("weight_map has %d entries", len(idx.WeightMap))
			}
			// Every shard but those holding a single oversized tensor fits.
			for i := 1; i <= n; i++ {
				f, err := safetensors.Open(filepath.Join(dir, fmt.Sprintf("model-%05d-of-%05d.safetensors", i, n)))
				if err != nil {
					t.Fatal(err)
				}
				var size int64
				for _, name := range f.Names() {
					info, _ := f.Info(name)
					size += info.End - info.Begin
					if idx.WeightMap[name] != filepath.Base(f.Path()) {
						t.Errorf("weight_map[%s] = %s, tensor is in %s", name, idx.WeightMap[name], f.Path())
					}
				}
				if size > shardBytes && len(f.Names()) > 1 {
					t.Errorf("shard %d of %d holds %d bytes > %d", i, n, size, shardBytes)
				}
				if f.Metadata()["format"] != "pt" {
					t.Errorf("shard metadata %v", f.Metadata())
				}
				f.Close()
			}
		}

		c, err := Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		if len(c.Names()) != len(ts) {
			t.Errorf("%d names, want %d", len(c.Names()), len(ts))
		}
		for _, want := range ts {
			got, ok := c.Tensor(want.Name)
			if !ok || got.DType != want.DType || fmt.Sprint(got.Shape) != fmt.Sprint(want.Shape) || !bytes.Equal(got.Data, want.Data) {
				t.Fatalf("shard %d: tensor %s differs", shardBytes, want.Name)
			}
		}
		if c.Generation != nil {
			t.Error("generation config from nowhere")
		}
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

type indexFile struct {
	Metadata  map[string]int64  `json:"metadata"`
	WeightMap map[string]string `json:"weight_map"`
}

func readIndexFile(t *testing.T, dir string) indexFile {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, IndexFile))
	if err != nil {
		t.Fatal(err)
	}
	var idx indexFile
	if err := json.Unmarshal(data, &idx); err != nil {
		t.Fatal(err)
	}
	if !bytes.HasSuffix(data, []byte("}\n")) || !bytes.Contains(data, []byte("\n  \"metadata\"")) {
		t.Errorf("index not in the transformers layout:\n%s", data)
	}
	return idx
}

// safetensorsFile builds a small valid safetensors file holding the named
// U8 tensors of one byte each.
func safetensorsFile(names ...string) []byte {
	var h strings.Builder
	h.WriteString("{")
	for i, n := range names {
		if i > 0 {
			h.WriteString(",")
		}
		fmt.Fprintf(&h, `%q:{"dtype":"U8","shape":[1],"data_offsets":[%d,%d]}`, n, i, i+1)
	}
	h.WriteString("}")
	b := binary.LittleEndian.AppendUint64(nil, uint64(h.Len()))
	b = append(b, h.String()...)
	return append(b, make([]byte, len(names))...)
}

// stFile lays out a safetensors file: header length, header, data.
func stFile(header string, data []byte) []byte {
	b := binary.LittleEndian.AppendUint64(nil, uint64(len(header)))
	return append(append(b, header...), data...)
}

func TestUnindexedShards(t *testing.T) {
	dir := t.TempDir()
	must(t, os.WriteFile(filepath.Join(dir, "config.json"), []byte(`{}`), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "a.safetensors"), safetensorsFile("x", "y"), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "b.safetensors"), safetensorsFile("z"), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, ".hidden.safetensors"), []byte("junk"), 0o644))
	c, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(c.Names()) != "[x y z]" || len(c.Files()) != 2 {
		t.Errorf("names %v files %v", c.Names(), c.Files())
	}
	c.Close()
}

func TestIndexExtraTensors(t *testing.T) {
	dir := t.TempDir()
	must(t, os.WriteFile(filepath.Join(dir, "config.json"), []byte(`{}`), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "s1.safetensors"), safetensorsFile("x", "extra"), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "s2.safetensors"), safetensorsFile("x", "y"), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, IndexFile), []byte(`{"metadata":{},"weight_map":{"x":"s2.safetensors","y":"s2.safetensors","extra":"s1.safetensors"}}`), 0o644))
	c, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if fmt.Sprint(c.Names()) != "[extra x y]" {
		t.Errorf("names %v", c.Names())
	}
	x, _ := c.Tensor("x")
	info, _ := c.Info("x")
	if info.Begin != 0 || len(x.Data) != 1 {
		t.Errorf("x: %+v", info)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestOpenErrors(t *testing.T) {
	valid := safetensorsFile("a", "b")
	cases := []struct {
		name  string
		files map[string][]byte
		want  string
	}{
		{"no config", map[string][]byte{"model.safetensors": valid}, "no config.json"},
		{"bad config", map[string][]byte{"config.json": []byte(`{"hidden_size":"x"}`), "model.safetensors": valid}, `config.json: field "hidden_size"`},
		{"invalid config JSON", map[string][]byte{"config.json": []byte(`{`), "model.safetensors": valid}, "config.json: invalid JSON"},
		{"bad generation config", map[string][]byte{"config.json": []byte(`{}`), "generation_config.json": []byte(`{"top_k":"x"}`), "model.safetensors": valid}, `generation_config.json: field "top_k"`},
		{"no weights", map[string][]byte{"config.json": []byte(`{}`)}, "no weights"},
		{"only pickles", map[string][]byte{"config.json": []byte(`{}`), "pytorch_model.bin": []byte("x")}, "only PyTorch pickle files"},
		{"truncated weights", map[string][]byte{"config.json": []byte(`{}`), "model.safetensors": valid[:len(valid)-1]}, "model.safetensors: header: tensor \"b\""},
		{"corrupt header", map[string][]byte{"config.json": []byte(`{}`), "model.safetensors": stFile("{x}", nil)}, "model.safetensors: header: invalid JSON"},
		{"duplicate without index", map[string][]byte{"config.json": []byte(`{}`), "a.safetensors": valid, "b.safetensors": valid}, `tensor "a" is in both a.safetensors and b.safetensors`},
		{"missing shard", map[string][]byte{"config.json": []byte(`{}`), IndexFile: []byte(`{"weight_map":{"a":"model-00001-of-00002.safetensors","b":"model-00002-of-00002.safetensors"}}`), "model-00001-of-00002.safetensors": safetensorsFile("a")}, "shard model-00002-of-00002.safetensors (holding \"b\") does not exist"},
		{"index names missing tensor", map[string][]byte{"config.json": []byte(`{}`), IndexFile: []byte(`{"weight_map":{"a":"s.safetensors","c":"s.safetensors"}}`), "s.safetensors": valid}, `the index puts tensor "c" in s.safetensors, which does not contain it`},
		{"index invalid JSON", map[string][]byte{"config.json": []byte(`{}`), IndexFile: []byte(`{"weight_map":`)}, IndexFile + ": invalid JSON"},
		{"index without weight_map", map[string][]byte{"config.json": []byte(`{}`), IndexFile: []byte(`{"metadata":{}}`)}, `no "weight_map"`},
		{"index empty weight_map", map[string][]byte{"config.json": []byte(`{}`), IndexFile: []byte(`{"weight_map":{}}`)}, `"weight_map" is empty`},
		{"index weight_map wrong type", map[string][]byte{"config.json": []byte(`{}`), IndexFile: []byte(`{"weight_map":["a"]}`)}, `"weight_map" must be an object`},
		{"index file not string", map[string][]byte{"config.json": []byte(`{}`), IndexFile: []byte(`{"weight_map":{"a":1}}`)}, `tensor "a": want a file name, got 1`},
		{"index escapes folder", map[string][]byte{"config.json": []byte(`{}`), IndexFile: []byte(`{"weight_map":{"a":"../x.safetensors"}}`)}, "leaves the model folder"},
		{"index absolute path", map[string][]byte{"config.json": []byte(`{}`), IndexFile: []byte(`{"weight_map":{"a":"/etc/passwd"}}`)}, "leaves the model folder"},
		{"shape size mismatch", map[string][]byte{"config.json": []byte(`{}`), "model.safetensors": stFile(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}`, make([]byte, 4))}, "= 8 bytes, but data_offsets [0, 4] span 4 bytes"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, data := range c.files {
				must(t, os.WriteFile(filepath.Join(dir, name), data, 0o644))
			}
			ck, err := Open(dir)
			if err == nil {
				ck.Close()
				t.Fatalf("Open succeeded, want %q", c.want)
			}
			t.Log(err)
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not contain %q", err, c.want)
			}
			if !strings.Contains(err.Error(), dir) {
				t.Errorf("error %q does not name the folder", err)
			}
		})
	}
	if _, err := Open(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("Open of a missing folder succeeded")
	}
	f := filepath.Join(t.TempDir(), "file")
	must(t, os.WriteFile(f, nil, 0o644))
	if _, err := Open(f); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("Open of a file: %v", err)
	}
}
