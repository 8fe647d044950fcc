package quant

import (
	"math/rand"
	"testing"
)

// BenchmarkQuantizeRTN measures the quantizers on a 2048×2048 matrix.
func BenchmarkQuantizeRTN(b *testing.B) {
	rng := rand.New(rand.NewSource(1))
	w := randWeights(rng, 2048*2048)
	for _, f := range []string{"int4", "int3", "int8", "fp4", "mxfp4", "nvfp4", "fp8"} {
		spec, _ := ParseSpec(f, 128, true)
		if f == "fp4" || f == "mxfp4" || f == "nvfp4" || f == "fp8" {
			spec, _ = ParseSpec(f, 0, true)
		}
		b.Run(f, func(b *testing.B) {
			for b.Loop() {
				if _, err := QuantizeRTN(w, 2048, 2048, spec); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(2048*2048)*float64(b.N)/b.Elapsed().Seconds()/1e6, "Mw/s")
		})
	}
}
