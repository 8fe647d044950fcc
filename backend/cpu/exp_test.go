package cpu

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestExp32 compares exp32 with math.Exp rounded to float32 on random
// arguments over the whole range and on the edges: within 2 ulp (the
// polynomial and the reduction each add well under one ulp).
func TestExp32(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	check := func(x float32) {
		got := exp32(x)
		want := float32(math.Exp(float64(x)))
		if math.IsInf(float64(want), 1) {
			if !math.IsInf(float64(got), 1) {
				t.Fatalf("exp32(%g) = %g, want +Inf", x, got)
			}
			return
		}
		ulp := math.Nextafter32(want, float32(math.Inf(1))) - want
		if want == 0 {
			ulp = math.SmallestNonzeroFloat32
		}
		if d := math.Abs(float64(got - want)); d > 2*float64(ulp) {
			t.Fatalf("exp32(%g) = %g, want %g (%g ulp)", x, got, want, d/float64(ulp))
		}
	}
	for range 2_000_000 {
		check(float32(rng.Float64()*200 - 105))
	}
	for _, x := range []float32{0, -0, 1, -1, 88.7, 88.72283, 88.73, -87.3, -103.9, -104, -1e-30, 1e-30} {
		check(x)
	}
	if got := exp32(float32(math.NaN())); got == got {
		t.Fatalf("exp32(NaN) = %g", got)
	}
}
