package cpu

import (
	"sync"
	"time"
)

// MemoryBandwidth measures this machine's memory bandwidth with threads
// goroutines: a copy between two buffers of size bytes each (counting the
// bytes read and the bytes written), best of reps runs, in bytes per second.
// The buffers should be several times the last-level cache.
func MemoryBandwidth(threads int, size int, reps int) float64 {
	if threads <= 0 {
		threads = 1
	}
	src := make([]byte, size)
	dst := make([]byte, size)
	for i := range src {
		src[i] = byte(i*131 + 7) // touch every page; not zeros
	}
	copy(dst, src)
	best := 0.0
	for range max(reps, 1) {
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
	return best
}
