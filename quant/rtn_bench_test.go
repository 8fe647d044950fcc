package quant

import (
	"math/rand"
	"testing"
)

// BenchmarkQuantizeRTN measures the quantizers on a 2048×2048 matrix, with
// the scale search (the default) and without it ("plain").
func BenchmarkQuantizeRTN(b *testing.B) {
	rng := rand.New(rand.NewSource(1))
	w := randWeights(rng, 2048*2048)
	for _, f := range []string{"int4", "int4g32", "int3", "int8", "fp4", "mxfp4", "nvfp4", "fp8"} {
		for _, plain := range []bool{false, true} {
			spec, _ := ParseSpec(f, 128, true)
			switch f {
			case "int4g32":
				spec, _ = ParseSpec("int4", 32, true)
			case "fp4", "mxfp4", "nvfp4", "fp8":
				spec, _ = ParseSpec(f, 0, true)
			}
			spec.MaxScale = plain
			name := f
			if plain {
				name += "-plain"
			}
			b.Run(name, func(b *testing.B) {
				for b.Loop() {
					if _, err := QuantizeRTN(w, 2048, 2048, spec); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(2048*2048)*float64(b.N)/b.Elapsed().Seconds()/1e6, "Mw/s")
			})
		}
	}
}
