package cpu

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestParallelCoversOnce checks that parallel calls fn on every index
// exactly once, in chunks aligned as asked, from one caller and from
// several at once (the pool is then busy and callers fall back to their own
// goroutines).
func TestParallelCoversOnce(t *testing.T) {
	b := New(3)
	defer b.Close()
	check := func(n, align int) {
		hits := make([]atomic.Int32, n)
		b.parallel(n, align, func(lo, hi int) {
			if lo%max(align, 1) != 0 {
				t.Errorf("n=%d align=%d: chunk starts at %d", n, align, lo)
			}
			for i := lo; i < hi; i++ {
				hits[i].Add(1)
			}
		})
		for i := range hits {
			if h := hits[i].Load(); h != 1 {
				t.Fatalf("n=%d align=%d: index %d run %d times", n, align, i, h)
			}
		}
	}
	for _, n := range []int{0, 1, 2, 7, 64, 1000, 4097} {
		for _, align := range []int{0, 1, 3, 16, 64} {
			check(n, align)
		}
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 200 {
				check(513, 8)
			}
		}()
	}
	wg.Wait()
	// an op started from inside another finds the pool busy
	b.parallel(4, 1, func(lo, hi int) { check(100, 1) })
}

// TestPoolStops checks that Close ends the helper goroutines, parked or
// spinning.
func TestPoolStops(t *testing.T) {
	b := New(4)
	b.parallel(100, 1, func(lo, hi int) {})
	if n := b.pool.running.Load(); n != 3 {
		t.Fatalf("%d helper goroutines after New(4), want 3", n)
	}
	b.Close()
	deadline := time.Now().Add(5 * time.Second)
	for b.pool.running.Load() > 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if n := b.pool.running.Load(); n > 0 {
		t.Errorf("%d helper goroutines still running 5 s after Close", n)
	}
}
