package quant

import (
	"math"

	"github.com/marlin-llm/marlin/dtype"
)

// The scale search of the round-to-nearest quantizers. Taking a group's
// scale from its largest magnitude wastes resolution on one outlier: every
// other weight of the group is rounded on a grid stretched to reach it. A
// slightly smaller scale clips that weight a little and rounds all the
// others more finely; per group the quantizers try such candidates and keep
// the one of least squared error Σ(w − ŵ)², evaluated exactly as the
// weight will decode. The plain scale is always a candidate and wins ties,
// so the result is never worse than plain round-to-nearest in that error.

// The candidates: the fraction p of the group's range (integers) or of its
// largest magnitude (FP4) that a candidate keeps runs over searchSteps
// values from 1 down to searchMinRange. Each candidate is scored by the
// least squared error its codes allow, Σx² − (Σx·r)²/Σr² at the scale
// Σx·r/Σr² (r the codes, less the zero point); that scale of the best
// candidate, rounded to the storage type, is then evaluated exactly, and
// refitted to its own codes, while it improves (searchRefits times at
// most).
const (
	searchSteps    = 10
	searchMinRange = 0.7
	searchRefits   = 3
)

// searchP returns the i-th kept fraction of the range, 1 for i = 0.
func searchP(i int) float64 {
	return 1 - float64(i)*(1-searchMinRange)/(searchSteps-1)
}

// groupParams returns the scale (an fp16 value) and zero point of the GPTQ
// group xs: gptqParams of its range [min(xs, 0), max(xs, 0)], or, with
// search, the pair of least squared error Σ(x − (q − z)·s)² among that one
// and the least-squares refits described above, the candidates being
// gptqParams of the ranges [p·min, p·max] (asymmetric: also the zero
// points one above and below each refit's).
func groupParams(xs []float64, bits int, sym bool, zeroOffset int, search bool) (float32, float64) {
	xmin, xmax := 0.0, 0.0
	for _, v := range xs {
		if v < xmin {
			xmin = v
		} else if v > xmax {
			xmax = v
		}
	}
	s, z := gptqParams(xmin, xmax, bits, sym, zeroOffset)
	maxq := float64(int(1)<<uint(bits) - 1)
	// (beyond fp16's range the scale saturates and the search's bound on
	// |x/s| would not hold)
	if !search || (xmin == 0 && xmax == 0) || (xmax-xmin)/maxq >= 32768 {
		return s, z
	}
	minScale := s / 16 // refits stay above, so that |x/s| ≤ 16·maxq
	best, a, b := intGroupError(xs, s, z, maxq)
	score, zc := -1.0, z
	if b > 0 && a > 0 {
		score = a * a / b
	}
	for i := 1; i < searchSteps; i++ {
		p := searchP(i)
		cs, cz := gptqParams(p*xmin, p*xmax, bits, sym, zeroOffset)
		if ca, cb := intGroupFit(xs, cs, cz, maxq); cb > 0 && ca > 0 && ca*ca/cb > score {
			score, a, b, zc = ca*ca/cb, ca, cb, cz
		}
	}
	for it := 0; it < searchRefits && score >= 0; it++ {
		ns := dtype.F16ToF32(dtype.F32ToF16(float32(a / b)))
		if !(ns >= minScale) || math.IsInf(float64(ns), 0) {
			break
		}
		improved := false
		z0 := zc
		for dz := -1.0; dz <= 1; dz++ {
			cz := z0 + dz
			if (sym && dz != 0) || cz < float64(zeroOffset) || cz > maxq || (ns == s && cz == z) {
				continue
			}
			if e, ca, cb := intGroupError(xs, ns, cz, maxq); e < best {
				best, s, z, a, b, zc = e, ns, cz, ca, cb, cz
				improved = true
			}
		}
		if !improved || !(b > 0 && a > 0) {
			break
		}
	}
	return s, z
}

// intGroupError returns Σ (x − (q − z)·s)² over the group with the codes
// q = clamp(round(x/s) + z, 0, maxq) the quantizers store: the squared
// error of the decoded group ((q − z)·s is exact in float32 and float64),
// summed in element order; and the sums Σx·r and Σr², r = q − z. |x/s|
// must stay below 2^51.
func intGroupError(xs []float64, s float32, z, maxq float64) (e, xr, rr float64) {
	sf := float64(s)
	lo, hi := int64(-z), int64(maxq-z)
	for _, x := range xs {
		r := float64(min(max(int64(roundEven(x/sf)), lo), hi))
		d := x - r*sf
		e += d * d
		xr += x * r
		rr += r * r
	}
	return e, xr, rr
}

// roundEven is math.RoundToEven for |y| < 2^51 (up to the sign of a zero
// result): adding and removing 1.5·2^52 lands on the integers, rounding to
// even. Unlike math.RoundToEven it compiles to two additions on every
// amd64 level (the call fallback of math.RoundToEven's SSE4.1 check spills
// registers around the whole loop).
func roundEven(y float64) float64 {
	const magic = 0x1.8p52
	return float64(y+magic) - magic
}

// intGroupFit returns Σx·r and Σr² (summed in element order) for the codes
// of scale s and zero z, r = clamp(round(x/s) + z, 0, maxq) − z, with x/s
// computed as x·(1/s): the sums only rank candidates. The codes are clamped
// as integers, without branches, which random weights would mispredict.
func intGroupFit(xs []float64, s float32, z, maxq float64) (xr, rr float64) {
	inv := 1 / float64(s)
	lo, hi := int64(-z), int64(maxq-z)
	for _, x := range xs {
		r := float64(min(max(int64(roundEven(x*inv)), lo), hi))
		xr += x * r
		rr += r * r
	}
	return xr, rr
}

// fp4GroupError returns Σ (x − e2m1(q)·s)² with q = ToE2M1(x/s), the codes
// FP4 and MXFP4 store (e2m1(q)·s is exact; the error of −x is that of x),
// summed in element order. It stops early, returning a partial sum ≥ limit,
// once the sum reaches limit (the terms are ≥ 0: the whole sum would be too).
func fp4GroupError(xs []float64, s float32, limit float64) float64 {
	sf := float64(s)
	var e float64
	for i, x := range xs {
		x = math.Abs(x)
		d := x - float64(e2m1Round(float32(x/sf))*s)
		e += d * d
		if i&7 == 7 && e >= limit {
			break
		}
	}
	return e
}

// nvfp4GroupError is fp4GroupError for an NVFP4 block of scale s (an e4m3
// value) and global scale gs, decoded as float32(e2m1·s)·gs.
func nvfp4GroupError(xs []float64, s, gs float32, limit float64) float64 {
	eff := float64(s) * float64(gs)
	var e float64
	if eff == 0 { // every code 0
		for _, x := range xs {
			e += x * x
		}
		return e
	}
	for i, x := range xs {
		x = math.Abs(x)
		d := x - float64(e2m1Round(float32(x/eff))*s*gs)
		e += d * d
		if i&7 == 7 && e >= limit {
			break
		}
	}
	return e
}

// fp4Scale returns the fp16 scale of an FP4 group xs of largest magnitude
// amax: amax/6 rounded up to fp16, or with search the candidate of least
// squared error among (p·amax)/6 rounded up to fp16 for the grid of p and
// the least-squares refits of the best (Σ x·e / Σ e² with e the decoded
// e2m1 values, rounded to the nearest fp16 value) while they improve.
func fp4Scale(xs []float64, amax float32, search bool) float32 {
	s, ok := f16Up(float64(amax) / 6)
	if !ok {
		s = 65504
	}
	if !search || amax == 0 {
		return s
	}
	best := fp4GroupError(xs, s, math.Inf(1))
	try := func(c float32) bool {
		if c == s || c == 0 || math.IsInf(float64(c), 0) {
			return false
		}
		if e := fp4GroupError(xs, c, best); e < best {
			best, s = e, c
			return true
		}
		return false
	}
	for i := 1; i < searchSteps; i++ {
		if c, ok := f16Up(searchP(i) * float64(amax) / 6); ok {
			try(c)
		}
	}
	for it := 0; it < searchRefits; it++ {
		var sxe, see float64
		sf := float64(s)
		for _, x := range xs {
			x = math.Abs(x)
			e := float64(e2m1Round(float32(x / sf)))
			sxe += x * e
			see += e * e
		}
		if !(see > 0 && sxe > 0) || !try(dtype.F16ToF32(dtype.F32ToF16(float32(sxe/see)))) {
			break
		}
	}
	return s
}

// mxfp4Exponent returns the e8m0 exponent e (scale 2^e) of an MXFP4 block
// xs of largest magnitude amax: the OCP rule floor(log2 amax) − 2, or with
// search the best of that exponent and its two neighbours (one more never
// clips; one less clips the largest values harder and rounds the rest
// twice as finely).
func mxfp4Exponent(xs []float64, amax float32, search bool) int {
	e := -127
	if amax > 0 {
		// floor(log2(amax)) exactly, from the float's exponent
		_, ex := math.Frexp(float64(amax)) // amax = f·2^ex, f ∈ [0.5, 1)
		e = ex - 1 - 2                     // emax of e2m1 is 2
		e = max(-127, min(127, e))
	}
	if !search || amax == 0 {
		return e
	}
	best := fp4GroupError(xs, dtype.E8M0ToF32(uint8(e+127)), math.Inf(1))
	plain := e
	for _, c := range []int{plain + 1, plain - 1} {
		if c < -127 || c > 127 {
			continue
		}
		if err := fp4GroupError(xs, dtype.E8M0ToF32(uint8(c+127)), best); err < best {
			best, e = err, c
		}
	}
	return e
}

// nvfp4Scale returns the e4m3 scale of an NVFP4 block xs of largest
// magnitude amax under global scale gs: e4m3(amax/6/gs) rounded to nearest,
// or with search the best of that code, the next one up and the three
// below it (e4m3 values 6 to 12% apart).
func nvfp4Scale(xs []float64, amax, gs float32, search bool) float32 {
	c0 := dtype.F32ToE4M3(amax / 6 / gs)
	s := dtype.E4M3ToF32(c0)
	if !search || amax == 0 {
		return s
	}
	best := nvfp4GroupError(xs, s, gs, math.Inf(1))
	for d := -3; d <= 1; d++ {
		c := int(c0) + d
		if d == 0 || c < 1 || c > 0x7E { // positive, non-zero, not NaN
			continue
		}
		cs := dtype.E4M3ToF32(uint8(c))
		if e := nvfp4GroupError(xs, cs, gs, best); e < best {
			best, s = e, cs
		}
	}
	return s
}
