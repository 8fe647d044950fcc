package model

import (
	"fmt"
	"math"

	"github.com/marlin-llm/marlin/backend"
	"github.com/marlin-llm/marlin/format/hf"
)

// ropeFor computes the rotary embedding of a head of dim rotated dimensions
// the way transformers' rope initialisers do (inverse frequencies in
// float64, rounded to float32).
func ropeFor(r hf.Rope, dim int) (backend.Rope, error) {
	if dim <= 0 || dim%2 != 0 {
		return backend.Rope{}, fmt.Errorf("rotary dimension %d must be positive and even", dim)
	}
	if r.Theta <= 0 {
		return backend.Rope{}, fmt.Errorf("rope theta %g must be positive", r.Theta)
	}
	half := dim / 2
	inv := make([]float64, half)
	for i := range inv {
		inv[i] = 1 / math.Pow(r.Theta, float64(2*i)/float64(dim))
	}
	scale := 1.0
	switch r.Type {
	case "default", "":
	case "linear":
		for i := range inv {
			inv[i] /= r.Factor
		}
	case "llama3":
		llama3Scale(inv, r)
	default:
		return backend.Rope{}, fmt.Errorf("rope type %q is not supported", r.Type)
	}
	out := backend.Rope{InvFreq: make([]float32, half), Scale: float32(scale)}
	for i, f := range inv {
		out.InvFreq[i] = float32(f)
	}
	return out, nil
}

// llama3Scale applies Llama 3.1's frequency-dependent scaling: wavelengths
// shorter than original/high_freq_factor are kept, longer than
// original/low_freq_factor divided by factor, and the band between is
// interpolated smoothly.
func llama3Scale(inv []float64, r hf.Rope) {
	old := float64(r.OriginalMaxPositionEmbeddings)
	lowWave, highWave := old/r.LowFreqFactor, old/r.HighFreqFactor
	for i, f := range inv {
		wave := 2 * math.Pi / f
		switch {
		case wave < highWave:
		case wave > lowWave:
			inv[i] = f / r.Factor
		default:
			s := (old/wave - r.LowFreqFactor) / (r.HighFreqFactor - r.LowFreqFactor)
			inv[i] = (1-s)*f/r.Factor + s*f
		}
	}
}
