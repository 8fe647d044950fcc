package model_test

import (
	"runtime"
	"testing"

	"github.com/marlin-llm/marlin/backend"
	"github.com/marlin-llm/marlin/backend/cpu"
	"github.com/marlin-llm/marlin/format/hf"
	"github.com/marlin-llm/marlin/model"
)

// heapGrowth returns the bytes allocated while alloc ran, keeping what
// alloc returned alive until measured. It reads TotalAlloc, which only
// grows: a collection during alloc cannot make the figure smaller than
// what alloc kept, and only other goroutines' allocations can add to it.
func heapGrowth(t *testing.T, alloc func() (any, error)) int64 {
	t.Helper()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	v, err := alloc()
	if err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(v)
	return int64(after.TotalAlloc) - int64(before.TotalAlloc)
}

// TestLatentCacheBytes measures, from the Go allocator, the KV cache of
// multi-head latent attention against the per-head K/V cache the same
// attention would need without the latent trick: first for the GLM-4-MoE-
// Lite fixture as loaded (its spec comes from the model), then for the
// full GLM-4.7-Flash shape (47 layers, 20 heads, kv_lora_rank 512,
// qk_rope_head_dim 64, qk_nope_head_dim 192, v_head_dim 256), whose spec is
// built the way the fixture's was. Bytes per token are float32 (the CPU
// cache); a 16-bit cache halves both sides.
func TestLatentCacheBytes(t *testing.T) {
	dir := "../testdata/models/glm4moelite-bf16"
	be := cpu.New(1)
	m, err := model.Load(dir, be)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ck, err := hf.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	c := ck.Config
	ck.Close()
	lat := m.Info().KV
	if !lat.ValueInKey || lat.KVHeads != 1 || lat.KeyDim != *c.KVLoraRank+*c.QKRopeHeadDim || lat.ValueDim != *c.KVLoraRank {
		t.Fatalf("fixture's KV spec %+v is not the latent cache of its config", lat)
	}
	perHead := func(s backend.KVSpec, heads, nope, rope, v int) backend.KVSpec {
		return backend.KVSpec{Layers: s.Layers, KVHeads: heads, KeyDim: nope + rope, ValueDim: v, BlockSize: s.BlockSize, Blocks: s.Blocks}
	}
	measure := func(name string, s backend.KVSpec) float64 {
		tokens := int64(s.Blocks * s.BlockSize)
		got := heapGrowth(t, func() (any, error) { return be.NewKVCache(s) })
		per := float64(got) / float64(tokens)
		if want := s.TokenBytes(); per < float64(want) || per > 1.01*float64(want) {
			t.Errorf("%s: allocator grew %.0f bytes per token, spec says %d", name, per, want)
		}
		t.Logf("%s: %.0f bytes per token (allocator, %d tokens)", name, per, tokens)
		return per
	}
	lat.BlockSize, lat.Blocks = 16, 64
	a := measure("fixture latent", lat)
	b := measure("fixture per-head", perHead(lat, c.NumAttentionHeads, *c.QKNopeHeadDim, *c.QKRopeHeadDim, *c.VHeadDim))
	if a >= b {
		t.Errorf("latent cache %.0f bytes per token, per-head %.0f", a, b)
	}

	full := backend.KVSpec{Layers: 47, KVHeads: 1, KeyDim: 512 + 64, ValueDim: 512, ValueInKey: true, BlockSize: 16, Blocks: 4}
	fa := measure("GLM-4.7-Flash latent", full)
	fb := measure("GLM-4.7-Flash per-head", perHead(full, 20, 192, 64, 256))
	// 576 numbers per token and layer against 20·(256+256) = 10240
	if r := fb / fa; r < 17.7 || r > 17.9 {
		t.Errorf("GLM-4.7-Flash per-head / latent = %.2f, want 10240/576 = 17.78", r)
	}
	t.Logf("GLM-4.7-Flash: latent %.0f B/token, per-head %.0f B/token (%.2f×); 32K tokens: %.2f GB against %.1f GB",
		fa, fb, fb/fa, fa*32768/1e9, fb*32768/1e9)
}
