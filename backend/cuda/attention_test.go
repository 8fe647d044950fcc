//go:build linux && !nocuda

package cuda

import (
	"testing"

	"github.com/marlin-llm/marlin/backend"
)

// TestSplitAttentionChoice checks, without a GPU, which flash-decoding
// kernel a launch gets: the wide form only where asked (one decode row)
// and only for 3 or 4 query heads a KV head of 64 or 128 dims, the narrow
// form of the right G otherwise, none for other head sizes or a latent
// cache.
func TestSplitAttentionChoice(t *testing.T) {
	var b Backend
	for typ := range numKV {
		for d := range 2 {
			for j := range 4 {
				b.k.attnSplit[typ][d][j] = uintptr(1000 + 100*typ + 10*d + j)
			}
			b.k.attnSplitWide[typ][d] = uintptr(2000 + 100*typ + 10*d)
		}
	}
	cases := []struct {
		heads, kvHeads, dim int
		latent, wantWide    bool
		f                   uintptr
		wide                bool
	}{
		{32, 8, 128, false, true, 2010, true},   // Llama-3: G = 4, wide
		{32, 8, 128, false, false, 1012, false}, // the same, narrow asked
		{12, 4, 64, false, true, 2000, true},    // G = 3: the G = 4 kernel
		{16, 2, 128, false, true, 1013, false},  // G = 8: narrow only
		{8, 4, 128, false, true, 1011, false},   // G = 2: narrow only
		{8, 8, 64, false, true, 1000, false},    // G = 1: narrow only
		{32, 8, 96, false, true, 0, false},      // head size without a kernel
		{16, 1, 128, true, true, 0, false},      // latent cache: its own kernels
	}
	for _, c := range cases {
		s := backend.KVSpec{KVHeads: c.kvHeads, KeyDim: c.dim, ValueDim: c.dim, ValueInKey: c.latent}
		f, wide := b.splitAttention(c.heads, s, 2, c.wantWide)
		want := c.f
		if want != 0 {
			want += 200 // the bf16 cache's kernels
		}
		if f != want || wide != c.wide {
			t.Errorf("%d heads, %d KV heads of %d (latent %v, wide asked %v): kernel %d wide %v, want %d wide %v",
				c.heads, c.kvHeads, c.dim, c.latent, c.wantWide, f, wide, want, c.wide)
		}
	}
}
