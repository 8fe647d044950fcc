package cpu

import (
	"sync"
	"time"

	"github.com/marlin-llm/marlin/internal/pages"
)

// MemoryBandwidth measures this machine's memory bandwidth with threads
// goroutines: a copy between two buffers of size bytes each (counting the
// bytes read and the bytes written), best of reps runs, in bytes per
// second. Each run copies between Go heap buffers and between buffers on
// huge pages (pages.Huge, where the weights the kernels stream live), and
// the best of all counts: the machine's copy bandwidth, not one
// allocator's. The buffers should be several times the last-level cache.
func MemoryBandwidth(threads int, size int, reps int) float64 {
	if threads <= 0 {
		threads = 1
	}
	hsrc, freeSrc := pages.Huge(size)
	hdst, freeDst := pages.Huge(size)
	defer func() {
		for _, f := range []func(){freeSrc, freeDst} {
			if f != nil {
				f()
			}
		}
	}()
	pairs := [][2][]byte{{make([]byte, size), make([]byte, size)}, {hdst, hsrc}}
	for _, p := range pairs {
		src := p[1]
		for i := range src {
			src[i] = byte(i*131 + 7) // touch every page; not zeros
		}
		copy(p[0], src)
	}
	best := 0.0
	for range max(reps, 1) {
		for _, p := range pairs {
			dst, src := p[0], p[1]
			start := time.Now()
			var wg sync.WaitGroup
			per := (size + threads - 1) / threads
			for lo := 0; lo < size; lo += per {
				hi := min(lo+per, size)
				wg.Add(1)
				go func() {
					defer wg.Done()
					copy(dst[lo:hi], src[lo:hi])
				}()
			}
			wg.Wait()
			if bw := float64(2*size) / time.Since(start).Seconds(); bw > best {
				best = bw
			}
		}
	}
	return best
}
