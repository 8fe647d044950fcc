package quant

import (
	"math/rand/v2"
	"testing"
)

// BenchmarkEncodeTiles measures the Viterbi search on all cores
// (weights/s = 256 × tiles/s).
func BenchmarkEncodeTiles(b *testing.B) {
	for _, K := range []int{2, 3, 4} {
		b.Run(map[int]string{2: "K2", 3: "K3", 4: "K4"}[K], func(b *testing.B) {
			x := GaussianSource(64*TileLen, 1)
			for i := range x {
				x[i] *= CodebookScale
			}
			st := make([]uint16, len(x))
			b.ResetTimer()
			for range b.N {
				if _, err := EncodeTiles(st, nil, x, K, Codebook3INST, 0, nil); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(x))*float64(b.N)/b.Elapsed().Seconds(), "weights/s")
		})
	}
}

func benchLayer(out, in int) ([]float32, []float64) {
	rng := rand.New(rand.NewPCG(1, 2))
	w := make([]float32, out*in)
	for i := range w {
		w[i] = float32(rng.NormFloat64())
	}
	// H = XᵀX of 2·in random correlated rows
	x := make([]float64, 2*in*in)
	for t := 0; t < 2*in; t++ {
		c := rng.NormFloat64()
		for i := 0; i < in; i++ {
			x[t*in+i] = rng.NormFloat64() + c
		}
	}
	h := make([]float64, in*in)
	dgemm(in, in, 2*in, 1, x, in, x, in, h, in, false, false, false)
	return w, h
}

// BenchmarkQuantizeGPTQ: one layer of [1024, 1024] and one of [1024,
// 4096] (an 8B model's input width), int4 g128 act-order, with the proxy
// errors of GPTQ and RTN that its report carries.
func BenchmarkQuantizeGPTQ(b *testing.B) {
	for _, in := range []int{1024, 4096} {
		b.Run(map[int]string{1024: "1024x1024", 4096: "1024x4096"}[in], func(b *testing.B) {
			const out = 1024
			w, h := benchLayer(out, in)
			b.ResetTimer()
			for range b.N {
				if _, _, err := QuantizeGPTQ(w, out, in, h, Spec{Format: GPTQ, Bits: 4, Group: 128, Sym: true}, GPTQOptions{ActOrder: true}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(out*in)*float64(b.N)/b.Elapsed().Seconds(), "weights/s")
		})
	}
}

// BenchmarkQuantizeEXL3: one [256, 256] layer at K = 3, all cores.
func BenchmarkQuantizeEXL3(b *testing.B) {
	w, h := benchLayer(256, 256)
	b.ResetTimer()
	for range b.N {
		if _, _, err := QuantizeEXL3(w, 256, 256, h, EXL3Options{Bits: 3}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(256*256*float64(b.N)/b.Elapsed().Seconds(), "weights/s")
}

// BenchmarkStep times one Viterbi step (65,536 states) of each kernel.
func BenchmarkStep(b *testing.B) {
	for _, name := range []string{"go", "avx2", "avx512"} {
		kernel, ok := stepKernels[name]
		if !ok {
			continue
		}
		for _, K := range []int{1, 2, 3, 4, 8} {
			ne := 1 << uint(16-K)
			prev, next := make([]float32, ne), make([]float32, ne)
			bp := make([]uint8, ne)
			val := Codebook3INST.Table()
			b.Run(name+"/K"+string(rune('0'+K)), func(b *testing.B) {
				for range b.N {
					kernel(next, bp, prev, val, 0.5, K)
				}
				b.ReportMetric(65536*float64(b.N)/b.Elapsed().Seconds()/1e9, "Gstates/s")
			})
		}
	}
}

// BenchmarkCholesky: the blocked factorization against the plain one on
// the same random 2048 × 2048 Hessian-like matrix (the ratio of the two
// is the figure: docs/perf.md).
func BenchmarkCholesky(b *testing.B) {
	const n = 2048
	h := spdRandomFast(n)
	l := make([]float64, n*n)
	for _, form := range []struct {
		name string
		f    func([]float64, int) error
	}{{"plain", choleskyPlain}, {"blocked", cholesky}} {
		b.Run(form.name, func(b *testing.B) {
			for range b.N {
				copy(l, h)
				if err := form.f(l, n); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(n)*n*n/3*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOPS")
		})
	}
}

// BenchmarkLowerInverse: the blocked inverse of a 2048 × 2048 Cholesky
// factor against the plain one.
func BenchmarkLowerInverse(b *testing.B) {
	const n = 2048
	l := spdRandomFast(n)
	if err := cholesky(l, n); err != nil {
		b.Fatal(err)
	}
	x := make([]float64, n*n)
	b.Run("plain", func(b *testing.B) {
		for range b.N {
			copy(x, l)
			invLowerPlain(x, n)
		}
		b.ReportMetric(float64(n)*n*n/3*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOPS")
	})
	b.Run("blocked", func(b *testing.B) {
		for range b.N {
			invLowerBlocked(l, n)
		}
		b.ReportMetric(float64(n)*n*n/3*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOPS")
	})
}

// spdRandomFast is a random SPD matrix made with dgemm: the Gram matrix
// of n/2 random rows plus n on the diagonal.
func spdRandomFast(n int) []float64 {
	rng := rand.New(rand.NewPCG(11, 12))
	x := randSlice(rng, n*n/2)
	h := make([]float64, n*n)
	dgemm(n, n, n/2, 1, x, n, x, n, h, n, false, false, false)
	for i := 0; i < n; i++ {
		h[i*n+i] += float64(n)
	}
	return h
}
