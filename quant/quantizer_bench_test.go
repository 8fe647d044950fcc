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
	h := make([]float64, in*in)
	x := make([]float64, in)
	for t := 0; t < 2*in; t++ {
		c := rng.NormFloat64()
		for i := range x {
			x[i] = rng.NormFloat64() + c
		}
		for i := range x {
			for j := range x {
				h[i*in+j] += x[i] * x[j]
			}
		}
	}
	return w, h
}

// BenchmarkQuantizeGPTQ: one [1024, 1024] layer, int4 g128 act-order.
func BenchmarkQuantizeGPTQ(b *testing.B) {
	w, h := benchLayer(1024, 1024)
	b.ResetTimer()
	for range b.N {
		if _, _, err := QuantizeGPTQ(w, 1024, 1024, h, Spec{Format: GPTQ, Bits: 4, Group: 128, Sym: true}, GPTQOptions{ActOrder: true}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(1024*1024*float64(b.N)/b.Elapsed().Seconds(), "weights/s")
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
