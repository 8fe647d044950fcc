package cpu

import (
	"sync"
	"time"

	"github.com/marlin-llm/marlin/backend/cpu/kernels"
	"github.com/marlin-llm/marlin/internal/pages"
)

// Bandwidth is a machine's memory bandwidth as MemoryBandwidth measures
// it, in bytes per second.
type Bandwidth struct {
	// Copy is a copy between two buffers, counting the bytes read and the
	// bytes written.
	Copy float64
	// Read is a bare read of one buffer (kernels.MemRead): a plain
	// reference for what a kernel that streams its weights once can reach
	// on these cores.
	Read float64
}

// MemoryBandwidth measures this machine's memory bandwidth with threads
// goroutines, each taking an equal contiguous part of buffers of size
// bytes, best of reps runs of each kind. Each run uses Go heap buffers and
// buffers on huge pages (pages.Huge, where the weights the kernels stream
// live), and the best of all counts: the machine's bandwidth, not one
// allocator's. The buffers should be several times the last-level cache.
func MemoryBandwidth(threads int, size int, reps int) Bandwidth {
	threads = max(threads, 1)
	size -= size % (256 * threads) // each part a multiple of MemRead's 256 bytes
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
	// run times fn on every part [lo, hi) of the buffers at once
	per := size / threads
	run := func(fn func(lo, hi int)) float64 {
		start := time.Now()
		var wg sync.WaitGroup
		for lo := 0; lo < size; lo += per {
			wg.Add(1)
			go func() {
				defer wg.Done()
				fn(lo, lo+per)
			}()
		}
		wg.Wait()
		return time.Since(start).Seconds()
	}
	var bw Bandwidth
	for range max(reps, 1) {
		for _, p := range pairs {
			dst, src := p[0], p[1]
			bw.Copy = max(bw.Copy, float64(2*size)/run(func(lo, hi int) { copy(dst[lo:hi], src[lo:hi]) }))
			bw.Read = max(bw.Read, float64(size)/run(func(lo, hi int) { kernels.MemRead(&src[lo], hi-lo) }))
		}
	}
	return bw
}
