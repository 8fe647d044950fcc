package dense

import (
	"sync/atomic"
	"testing"
)

// TestRange: every item of the range is visited exactly once, in parts of
// at least minPer items, for empty, short and long ranges.
func TestRange(t *testing.T) {
	for _, c := range []struct{ lo, hi, minPer int }{{0, 0, 1}, {3, 4, 1}, {5, 1000, 7}, {10, 20, 100}} {
		seen := make([]atomic.Int32, c.hi)
		Range(c.lo, c.hi, c.minPer, func(a, b int) {
			if b-a < min(c.minPer, c.hi-c.lo) {
				t.Errorf("%+v: part [%d, %d) shorter than %d", c, a, b, c.minPer)
			}
			for i := a; i < b; i++ {
				seen[i].Add(1)
			}
		})
		for i := range seen {
			want := int32(0)
			if i >= c.lo {
				want = 1
			}
			if got := seen[i].Load(); got != want {
				t.Errorf("%+v: item %d visited %d times, want %d", c, i, got, want)
			}
		}
	}
}

// TestTranspose against the definition, for a block with a stride wider
// than its columns, sizes with partial tiles, small (one part) and large
// (shared by the cores).
func TestTranspose(t *testing.T) {
	for _, sh := range [][3]int{{1, 1, 1}, {33, 70, 75}, {1100, 1000, 1003}} {
		rows, cols, ld := sh[0], sh[1], sh[2]
		src := make([]float64, rows*ld)
		for i := range src {
			src[i] = float64(i)*0.5 + 1
		}
		dst := make([]float64, rows*cols)
		Transpose(dst, src, rows, cols, ld)
		for r := 0; r < rows; r++ {
			for c := 0; c < cols; c++ {
				if dst[c*rows+r] != src[r*ld+c] {
					t.Fatalf("%v: dst[%d][%d] = %g, want %g", sh, c, r, dst[c*rows+r], src[r*ld+c])
				}
			}
		}
	}
}
