package qkernels

import (
	"encoding/binary"
	"runtime"
	"sync"

	"github.com/marlin-llm/marlin/internal/pages"
	"github.com/marlin-llm/marlin/quant"
)

// Act-order GPTQ weights (g_idx: the group of each input row, in the order
// GPTQ quantized the columns) run on the fast kernels by sorting the input
// rows by group: the inputs of group g become rows g·Group … (g+1)·Group−1
// of a copy of the codes (the scales and zero points, indexed by group,
// are shared), and each call gathers x into the same order first. The
// products are the same sums of the same terms in another order, so the
// results match the list kernels' within the kernels' tolerance, and the
// fast kernels' batch invariance holds for them too. Measured before this
// (dev-cpu, Zen 4, int4 g128, one x row): the list kernels streamed 3.6–5.7
// GB/s where the fast ones stream ~20.
//
// Cost: the sorted copy of the codes (on AVX-512 the packed copy is made
// from it and the sorted codes are dropped: one copy, as for other
// weights) and a gather of x a call.

// actPerm is an act-order weight's sorted form; wp is nil when the weight
// cannot take it (3-bit codes, whose values straddle words; groups of
// other sizes than Group; K or Group not multiples of 32).
type actPerm struct {
	perm []int32       // input j of wp is input perm[j] of the weight
	wp   *quant.Weight // the codes with the inputs sorted by group; GIdx nil
	src  *int32        // the g_idx it was made from
}

var actPerms perWeight[actPerm]

// actPermOf returns w's sorted form (nil when w has no g_idx or cannot be
// sorted), making it on first use.
func actPermOf(w *quant.Weight) *actPerm {
	if w.Format != quant.GPTQ || w.GIdx == nil {
		return nil
	}
	ap := actPerms.get(w, newActPerm, func(ap *actPerm, w *quant.Weight) bool { return ap.src == &w.GIdx[0] })
	if ap.wp == nil {
		return nil
	}
	return ap
}

func newActPerm(w *quant.Weight) *actPerm {
	ap := &actPerm{src: &w.GIdx[0]}
	perm, data := sortByGroup(w)
	if perm == nil {
		return ap
	}
	wp := *w
	wp.Data, wp.GIdx, wp.Mapped = data, nil, false
	ap.perm, ap.wp = perm, &wp
	packSorted(&wp)
	if w.Mapped {
		// the kernels read the sorted copy from now on (the edge columns
		// fault the few pages they need back in)
		pages.Release(w.Data)
	}
	return ap
}

// sortByGroup returns the order of w's input rows sorted by group (stable)
// and w's codes with the rows in that order, or nil when w cannot take it.
func sortByGroup(w *quant.Weight) (perm []int32, data []byte) {
	K, N, G, bits := w.In, w.Out, w.Group, w.Bits
	if bits == 3 || K%32 != 0 || G%32 != 0 || K%G != 0 {
		return nil, nil
	}
	perm, ok := quant.GroupOrder(w.GIdx, G)
	if !ok {
		return nil, nil
	}
	// qweight [K·bits/32, N]: value k of column n is bits (k·bits mod 32)
	// of word row k·bits/32 (bits ∈ {2, 4, 8}: never across two words)
	per := 32 / bits
	mask := uint32(1)<<uint(bits) - 1
	data = make([]byte, len(w.Data))
	// word rows of the copy split among the CPUs (a one-time cost at load:
	// each value is moved once)
	rows, workers := K/per, runtime.NumCPU()
	var wg sync.WaitGroup
	for wi := range workers {
		wg.Go(func() {
			row := make([]uint32, N)
			for r := rows * wi / workers; r < rows*(wi+1)/workers; r++ {
				clear(row)
				for j := 0; j < per; j++ {
					k := int(perm[r*per+j])
					sr, sh := k/per, uint(k%per*bits)
					for n := range row {
						row[n] |= (le32(w.Data, sr*N+n) >> sh & mask) << uint(j*bits)
					}
				}
				for n, v := range row {
					binary.LittleEndian.PutUint32(data[4*(r*N+n):], v)
				}
			}
		})
	}
	wg.Wait()
	return perm, data
}

// gather writes the M rows of x in the sorted order to xp.
func (ap *actPerm) gather(xp, x []float32, M int) {
	K := len(ap.perm)
	for m := 0; m < M; m++ {
		xr, xo := x[m*K:(m+1)*K], xp[m*K:(m+1)*K]
		for j, k := range ap.perm {
			xo[j] = xr[k]
		}
	}
}
