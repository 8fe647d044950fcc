package cpu

import (
	"math"
	"testing"
)

// TestMemoryBandwidth runs both measurements on small buffers, with thread
// counts that do not divide the size evenly: each must come out a positive,
// finite number of bytes per second.
func TestMemoryBandwidth(t *testing.T) {
	for _, threads := range []int{1, 2, 3} {
		bw := MemoryBandwidth(threads, 1<<20+100, 1)
		for _, v := range []float64{bw.Copy, bw.Read} {
			if !(v > 0) || math.IsInf(v, 0) {
				t.Errorf("%d threads: %+v, want positive finite bandwidths", threads, bw)
			}
		}
	}
}
