package qkernels

import (
	"fmt"
	"math/rand"
	"os"
	"testing"
	"time"

	"github.com/marlin-llm/marlin/quant"
)

// BenchmarkHot measures the kernels' compute throughput on one goroutine
// with a weight that stays in L2 (K=2048, N=256): weights per second and
// ns per 8 weights, the inner-loop cost without the memory system. The
// fastest of all iterations is reported (the machine may be shared).
func BenchmarkHot(b *testing.B) {
	rng := rand.New(rand.NewSource(1))
	K, N := 2048, hotN()
	for _, f := range benchFormats {
		if !selected("QBENCH_FORMATS", f.name) || f.name == "bf16" {
			continue
		}
		w := f.make(rng, N, K)
		for _, M := range []int{1, 2, 4, 16} {
			if !selected("QBENCH_M", fmt.Sprint(M)) {
				continue
			}
			x := randX(rng, M*K)
			dst := make([]float32, M*N)
			b.Run(fmt.Sprintf("%s/M%d", f.name, M), func(b *testing.B) {
				best := time.Duration(1 << 62)
				for b.Loop() {
					t := time.Now()
					MatMul(dst, N, x, M, w, 0, N)
					best = min(best, time.Since(t))
				}
				s := best.Seconds()
				b.ReportMetric(float64(M*K*N)/s/1e9, "Gw·rows/s")
				b.ReportMetric(s*1e9/float64(K*N/8), "ns/8w")
			})
		}
	}
	_ = quant.GPTQ
}

// hotN is the number of output columns of BenchmarkHot (QBENCH_HOTN, default 256).
func hotN() int {
	if v := os.Getenv("QBENCH_HOTN"); v != "" {
		var n int
		fmt.Sscan(v, &n)
		return n
	}
	return 256
}
