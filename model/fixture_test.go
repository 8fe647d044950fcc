package model_test

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/marlin-llm/marlin/backend"
	"github.com/marlin-llm/marlin/backend/cpu"
	"github.com/marlin-llm/marlin/engine"
	"github.com/marlin-llm/marlin/model"
)

// reference is what scripts/device/make_fixtures.py records with transformers.
type reference struct {
	Name    string      `json:"name"`
	IDs     []int32     `json:"ids"`
	Logits  [][]float64 `json:"logits"`
	Greedy  []int32     `json:"greedy"`
	Margins []float64   `json:"greedy_margins"`
}

func fixtures(t *testing.T) []string {
	dirs, err := filepath.Glob("../testdata/models/*")
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no fixtures under testdata/models: %v", err)
	}
	return dirs
}

func loadRef(t *testing.T, dir string) *reference {
	data, err := os.ReadFile(filepath.Join(dir, "reference.json"))
	if err != nil {
		t.Fatal(err)
	}
	var r reference
	if err := json.Unmarshal(data, &r); err != nil {
		t.Fatal(err)
	}
	return &r
}

// forwardAll runs ids as one sequence and returns every position's logits.
func forwardAll(t *testing.T, m model.Model, be backend.Backend, ids []int32) [][]float32 {
	info := m.Info()
	spec := info.KV
	spec.BlockSize, spec.Blocks = 4, (len(ids)+3)/4+1
	cache, err := be.NewKVCache(spec)
	if err != nil {
		t.Fatal(err)
	}
	b := &backend.Batch{Tokens: ids}
	var rows []int32
	for i := range ids {
		b.Pos = append(b.Pos, int32(i))
		rows = append(rows, int32(i))
	}
	blocks := []int32{}
	for i := spec.Blocks - 1; i >= 0; i-- { // a scrambled block table
		blocks = append(blocks, int32(i))
	}
	b.Seqs = []backend.Seq{{Start: 0, Len: len(ids), Blocks: blocks}}
	out := m.Forward(b, cache, rows)
	buf := make([]float32, len(ids)*info.Vocab)
	if err := be.Read(buf, out); err != nil {
		t.Fatal(err)
	}
	res := make([][]float32, len(ids))
	for i := range res {
		res[i] = buf[i*info.Vocab : (i+1)*info.Vocab]
	}
	return res
}

// TestFixtures checks every architecture against transformers: at every
// position max|Δlogit| ≤ 1e-4 · max|logit| (fp32 math on both sides; the
// remaining differences are summation order, ~1e-6 relative), and the
// 12-token greedy continuation is identical.
func TestFixtures(t *testing.T) {
	for _, dir := range fixtures(t) {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			ref := loadRef(t, dir)
			be := cpu.New(0)
			m, err := model.Load(dir, be)
			if err != nil {
				if isUnsupported(err) {
					t.Skipf("architecture not implemented yet: %v", err)
				}
				t.Fatal(err)
			}
			defer m.Close()
			got := forwardAll(t, m, be, ref.IDs)
			worst := 0.0
			for p, row := range ref.Logits {
				var maxAbs, maxDiff float64
				for j, v := range row {
					maxAbs = math.Max(maxAbs, math.Abs(v))
					maxDiff = math.Max(maxDiff, math.Abs(float64(got[p][j])-v))
				}
				if maxDiff > 1e-4*maxAbs {
					t.Errorf("position %d: max |Δ| = %.3g > 1e-4 × %.3g", p, maxDiff, maxAbs)
				}
				worst = math.Max(worst, maxDiff/maxAbs)
			}
			t.Logf("worst position: max |Δ| / max |logit| = %.2g", worst)

			e, err := engine.New(m, be, engine.Config{MaxSeqs: 1})
			if err != nil {
				t.Fatal(err)
			}
			defer e.Close()
			ch, err := e.Submit(context.Background(), engine.Request{Prompt: ref.IDs, MaxTokens: len(ref.Greedy), Logprobs: -1})
			if err != nil {
				t.Fatal(err)
			}
			var gen []int32
			for ev := range ch {
				if !ev.Done {
					gen = append(gen, ev.Token)
				}
			}
			if !equal(gen, ref.Greedy) {
				t.Errorf("greedy continuation %v, transformers %v", gen, ref.Greedy)
			}
		})
	}
}

func equal(a, b []int32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func isUnsupported(err error) bool {
	return err != nil && strings.Contains(err.Error(), "unsupported architecture")
}
