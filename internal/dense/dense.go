// Package dense holds the two helpers the quantizers' dense-matrix code
// shares: a range of independent rows split over the cores, and a tiled
// matrix transpose.
package dense

import (
	"runtime"
	"sync"
)

// Range runs f over [lo, hi) cut into one contiguous part a core, parts
// of at least minPer items (f(lo, hi) on the calling goroutine when the
// range is shorter than two parts; nothing when it is empty). The parts
// must be independent.
func Range(lo, hi, minPer int, f func(lo, hi int)) {
	n := hi - lo
	workers := min(runtime.GOMAXPROCS(0), n/max(minPer, 1))
	if workers <= 1 {
		if n > 0 {
			f(lo, hi)
		}
		return
	}
	var wg sync.WaitGroup
	for w := range workers {
		a, b := lo+n*w/workers, lo+n*(w+1)/workers
		wg.Add(1)
		go func() {
			defer wg.Done()
			f(a, b)
		}()
	}
	wg.Wait()
}

// Transpose writes the [cols, rows] transpose of the row-major [rows,
// cols] block of src that starts at src[0] with row stride ld into dst
// (row-major, len ≥ rows·cols), in 32 × 32 tiles so that neither side is
// read or written a stride at a time for long; blocks of a million values
// or more share the destination's rows among the cores.
func Transpose[T float32 | float64](dst, src []T, rows, cols, ld int) {
	const tb = 32
	tiles := (cols + tb - 1) / tb // the destination's rows, tb at a time
	minPer := 1
	if rows*cols < 1<<20 {
		minPer = tiles // one part, on the calling goroutine
	}
	Range(0, tiles, minPer, func(b0, b1 int) {
		for c0 := b0 * tb; c0 < min(cols, b1*tb); c0 += tb {
			for r0 := 0; r0 < rows; r0 += tb {
				for r := r0; r < min(rows, r0+tb); r++ {
					sr := src[r*ld:]
					for c := c0; c < min(cols, c0+tb); c++ {
						dst[c*rows+r] = sr[c]
					}
				}
			}
		}
	})
}
