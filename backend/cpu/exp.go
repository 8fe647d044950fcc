package cpu

import "math"

// exp32 returns e^x in float32 arithmetic, within 2 ulp of the correctly
// rounded result over the whole float32 range (tested against math.Exp),
// several times faster than converting to float64 for math.Exp.
//
// Method: x = n·ln2 + r with n = round(x/ln2) and |r| ≤ ln2/2 (ln2 split
// into a high part exact in float32 and a low correction, Cody–Waite);
// e^r by its Taylor polynomial to degree 7 (truncation error < 2e-9 on
// that interval); then multiply by 2^n built from the exponent bits, in two
// steps when 2^n alone would be subnormal.
func exp32(x float32) float32 {
	switch {
	case x != x:
		return x
	case x > 88.72284:
		return float32(math.Inf(1))
	case x < -103.97208:
		return 0
	}
	const (
		log2e = 1.44269504088896341
		ln2hi = 0.693145751953125 // 16 significant bits: n·ln2hi is exact
		ln2lo = 1.42860682030941723212e-6
	)
	n := float32(math.Floor(float64(x*log2e + 0.5)))
	r := x - n*ln2hi - n*ln2lo
	p := float32(1.0 / 5040)
	p = p*r + 1.0/720
	p = p*r + 1.0/120
	p = p*r + 1.0/24
	p = p*r + 1.0/6
	p = p*r + 0.5
	p = p*r + 1
	p = p*r + 1
	ni := int32(n)
	if ni < -126 {
		p *= math.Float32frombits(uint32(ni+126+127) << 23)
		return p * math.Float32frombits(1<<23) // 2^-126
	}
	if ni > 127 {
		return p * 2 * math.Float32frombits(uint32(ni-1+127)<<23)
	}
	return p * math.Float32frombits(uint32(ni+127)<<23)
}
