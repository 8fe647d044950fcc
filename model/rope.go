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
	case "yarn":
		scale = yarnScale(inv, r, dim)
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

// yarnMScale is YaRN's attention temperature correction for a context
// extended by factor: 0.1·m·ln(factor) + 1 (1 when factor ≤ 1).
func yarnMScale(factor, m float64) float64 {
	if factor <= 1 {
		return 1
	}
	return 0.1*m*math.Log(factor) + 1
}

// yarnScale applies YaRN: frequencies that rotate fewer than beta_slow
// times over the original context are interpolated (divided by factor),
// those rotating more than beta_fast times are kept, with a linear ramp
// between. It returns the factor that multiplies cos and sin.
func yarnScale(inv []float64, r hf.Rope, dim int) float64 {
	factor := r.Factor
	att := 0.0
	if r.AttentionFactor != nil {
		att = *r.AttentionFactor
	} else if r.MScale != 0 && r.MScaleAllDim != 0 {
		att = yarnMScale(factor, r.MScale) / yarnMScale(factor, r.MScaleAllDim)
	} else {
		att = yarnMScale(factor, 1)
	}
	orig := float64(r.OriginalMaxPositionEmbeddings)
	corr := func(rot float64) float64 {
		return float64(dim) * math.Log(orig/(rot*2*math.Pi)) / (2 * math.Log(r.Theta))
	}
	low, high := corr(r.BetaFast), corr(r.BetaSlow)
	if r.Truncate == nil || *r.Truncate {
		low, high = math.Floor(low), math.Ceil(high)
	}
	low, high = math.Max(low, 0), math.Min(high, float64(dim-1))
	if low == high {
		high += 0.001
	}
	for i, f := range inv {
		ramp := math.Min(math.Max((float64(i)-low)/(high-low), 0), 1)
		extrapolation := 1 - ramp
		inv[i] = f/factor*(1-extrapolation) + f*extrapolation
	}
	return att
}
