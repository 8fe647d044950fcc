package qkernels

import (
	"math/rand"
	"testing"

	"github.com/marlin-llm/marlin/quant"
)

// TestActOrderSorted checks the sorted form of act-order weights: the
// sorted codes' dequantized rows are the original's with the inputs
// permuted (exactly), the kernels' form has no g_idx and is made once, and
// the weights that cannot be sorted (3-bit codes, groups of unequal size)
// have none.
func TestActOrderSorted(t *testing.T) {
	rng := rand.New(rand.NewSource(8))
	for _, c := range []struct{ bits, group, off int }{{4, 32, 1}, {4, 128, 0}, {8, 64, 1}, {2, 32, 0}} {
		const out, in = 45, 256
		w := randomWeight(t, rng, quant.GPTQ, out, in, c.bits, c.group, c.off, c.off == 0, true, false)
		perm, data := sortByGroup(w)
		if perm == nil {
			t.Fatalf("%d bits g%d: not sorted", c.bits, c.group)
		}
		wp := *w
		wp.Data, wp.GIdx = data, nil
		a, b := make([]float32, in), make([]float32, in)
		for n := 0; n < out; n++ {
			w.DequantizeRow(a, n)
			wp.DequantizeRow(b, n)
			for j, k := range perm {
				if b[j] != a[k] {
					t.Fatalf("%d bits g%d: row %d input %d (from %d): %g, want %g", c.bits, c.group, n, j, k, b[j], a[k])
				}
			}
		}
		ap := actPermOf(w)
		if ap == nil || ap.wp.GIdx != nil {
			t.Fatalf("%d bits g%d: no sorted form", c.bits, c.group)
		}
		if actPermOf(w) != ap {
			t.Fatalf("%d bits g%d: the sorted form is made again", c.bits, c.group)
		}
	}
	w3 := randomWeight(t, rng, quant.GPTQ, 16, 256, 3, 32, 1, false, true, false)
	if actPermOf(w3) != nil {
		t.Fatal("3-bit act-order weight sorted")
	}
	uneven := randomWeight(t, rng, quant.GPTQ, 16, 256, 4, 32, 1, false, true, false)
	uneven.GIdx = append([]int32(nil), uneven.GIdx...)
	for k, g := range uneven.GIdx {
		if g == 1 {
			uneven.GIdx[k] = 0 // group 0 gets 64 rows, group 1 none
		}
	}
	if actPermOf(uneven) != nil {
		t.Fatal("act-order weight with unequal groups sorted")
	}
	plain := randomWeight(t, rng, quant.GPTQ, 16, 256, 4, 32, 1, false, false, false)
	if actPermOf(plain) != nil {
		t.Fatal("weight without g_idx sorted")
	}
}
