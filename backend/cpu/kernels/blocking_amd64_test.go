//go:build amd64 && !purego

package kernels

import (
	"math/rand/v2"
	"testing"
)

// TestBlockEdges shrinks the blocking parameters of the SIMD path so that
// small problems cross every block edge: several K blocks with a K tail in
// the last one, several weight panels with leftover groups of 3 and 4,
// leftover rows of x, and several N blocks in the small-M path.
func TestBlockEdges(t *testing.T) {
	if !hasSIMD {
		t.Skip("no SIMD path on this machine")
	}
	savedK, savedN, savedG, savedM := blockK, blockN, gemvBlockBytes, prefillMinM
	defer func() { blockK, blockN, gemvBlockBytes, prefillMinM = savedK, savedN, savedG, savedM }()
	r := rand.New(rand.NewPCG(13, 14))
	for _, bk := range []int{8, 16, 40} {
		for _, bn := range []int{12, 24} {
			blockK, blockN, gemvBlockBytes = bk, bn, 8*bk
			for _, minM := range []int{1, 4} {
				prefillMinM = minM
				for _, typ := range allTypes {
					for _, M := range []int{1, 2, 3, 4, 5, 6, 7, 9} {
						for _, K := range []int{7, 8, 9, 23, 41, 100} {
							N := 31 + r.IntN(30)
							p := newProblem(r, typ, M, K, N)
							p.check(t, N+1, 0, N)
							p.check(t, N, 2, N-1)
						}
					}
				}
			}
		}
	}
}
