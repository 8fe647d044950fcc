package qkernels

import (
	"fmt"
	"math/rand"
	"os"
	"sync"
	"testing"
	"time"
)

// TestHot2 (QBENCH_HOT2=1) runs the L2-resident int4 g32 kernel on both
// cores at once, to see the all-core compute ceiling.
func TestHot2(t *testing.T) {
	if os.Getenv("QBENCH_HOT2") == "" {
		t.Skip("set QBENCH_HOT2=1")
	}
	for _, f := range benchFormats {
		if !selected("QBENCH_FORMATS", f.name) || f.name == "bf16" {
			continue
		}
		K, N := 2048, 1024
		var wg sync.WaitGroup
		var total [2]float64
		for g := 0; g < 2; g++ {
			wg.Add(1)
			go func(g int) {
				defer wg.Done()
				rng := rand.New(rand.NewSource(int64(g)))
				w := f.make(rng, N, K)
				x := randX(rng, K)
				dst := make([]float32, N)
				best := time.Hour
				for i := 0; i < 3000; i++ {
					t0 := time.Now()
					MatMul(dst, N, x, 1, w, 0, N)
					best = min(best, time.Since(t0))
				}
				total[g] = float64(K*N) / best.Seconds() / 1e9
			}(g)
		}
		wg.Wait()
		fmt.Printf("%s: %.1f + %.1f Gw/s (both cores busy, best iteration each)\n", f.name, total[0], total[1])
	}
}
