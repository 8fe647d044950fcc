package vkernels

import "math"

// Portable implementations: the only path without AVX2/FMA and under the
// purego tag. They follow the same formulas as the assembly (the same
// reduction and polynomial for e^x), without fused multiply-adds, and use
// four independent accumulators where they sum.

var negInf = math.Inf(-1)

func sqrt(x float64) float64 { return math.Sqrt(x) }

// Constants of e^x (see Exp): the clamp bounds, log2 e, ln2 split into a
// head exact to 16 bits and a tail, and the Taylor coefficients 1/k!.
const (
	expHi    = 88.8 // above the overflow threshold 88.72284: gives +Inf
	expLo    = -104 // below the underflow threshold -103.97208: gives 0
	expLog2e = 1.44269504088896341
	expLn2Hi = 0.693145751953125 // n·expLn2Hi is exact for |n| < 2^8
	expLn2Lo = 1.42860682030941723212e-6
	expC7    = 1.0 / 5040
	expC6    = 1.0 / 720
	expC5    = 1.0 / 120
	expC4    = 1.0 / 24
	expC3    = 1.0 / 6
	expC2    = 0.5
)

// exp1 returns e^x as documented on Exp.
func exp1(x float32) float32 {
	switch {
	case x != x:
		return x
	case x > expHi:
		x = expHi
	case x < expLo:
		x = expLo
	}
	n := float32(math.RoundToEven(float64(x * expLog2e)))
	r := x - n*expLn2Hi
	r -= n * expLn2Lo
	p := float32(expC7)
	p = p*r + expC6
	p = p*r + expC5
	p = p*r + expC4
	p = p*r + expC3
	p = p*r + expC2
	p = p*r + 1
	p = p*r + 1
	ni := int32(n)
	if uint32(ni+126) <= 253 { // 2^n is normal: one product
		return p * math.Float32frombits(uint32(ni+127)<<23)
	}
	// n ∈ [-150, 128]: 2^n = 2^n1·2^n2 with both factors normal; p·2^n1
	// is exact, the second product rounds once (to a subnormal, or Inf).
	n1 := ni >> 1
	n2 := ni - n1
	p *= math.Float32frombits(uint32(n1+127) << 23)
	return p * math.Float32frombits(uint32(n2+127)<<23)
}

func expGo(dst, src []float32) {
	dst = dst[:len(src)]
	for i, x := range src {
		dst[i] = exp1(x)
	}
}

func siluMulGo(dst, gate, up []float32) {
	dst, up = dst[:len(gate)], up[:len(gate)]
	for i, x := range gate {
		dst[i] = x / (1 + exp1(-x)) * up[i]
	}
}

func maxScaledGo(x []float32, scale float32) float32 {
	m := float32(negInf)
	for _, v := range x {
		m = max(m, v*scale)
	}
	return m
}

func expSumGo(x []float32, scale, shift float32) float32 {
	var s [4]float32
	for i, v := range x {
		e := exp1(v*scale - shift)
		x[i] = e
		s[i&3] += e
	}
	return (s[0] + s[1]) + (s[2] + s[3])
}

func scaleGo(x []float32, a float32) {
	for i := range x {
		x[i] *= a
	}
}

func sumSquaresGo(x []float32) float64 {
	var s0, s1, s2, s3 float64
	i := 0
	for ; i+4 <= len(x); i += 4 {
		a, b, c, d := float64(x[i]), float64(x[i+1]), float64(x[i+2]), float64(x[i+3])
		s0 += a * a
		s1 += b * b
		s2 += c * c
		s3 += d * d
	}
	for ; i < len(x); i++ {
		a := float64(x[i])
		s0 += a * a
	}
	return (s0 + s1) + (s2 + s3)
}

func scaleMulGo(dst, x, w []float32, r float32) {
	dst, w = dst[:len(x)], w[:len(x)]
	for i, v := range x {
		dst[i] = v * r * w[i]
	}
}

// dotGo returns Σ a[i]·b[i] over len(a) terms (len(b) ≥ len(a)).
func dotGo(a, b []float32) float32 {
	b = b[:len(a)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(a); i += 4 {
		s0 += a[i] * b[i]
		s1 += a[i+1] * b[i+1]
		s2 += a[i+2] * b[i+2]
		s3 += a[i+3] * b[i+3]
	}
	for ; i < len(a); i++ {
		s0 += a[i] * b[i]
	}
	return (s0 + s1) + (s2 + s3)
}

// scoresGo is BlockScores in Go, for heads [0, g) and positions [0, n).
func scoresGo(scores []float32, lds int, q []float32, g int, keys []float32, n, dim int) {
	for h := range g {
		qh := q[h*dim : h*dim+dim]
		row := scores[h*lds : h*lds+n]
		for t := range row {
			row[t] = dotGo(qh, keys[t*dim:t*dim+dim])
		}
	}
}

// axpyRowsGo computes out[r*ldo+c] += Σ_{t<n} p[r*ldp+t]·v[t*ldv+c] for
// r < rows, c < width: BlockValues, and BlockScoresT on cleared scores.
func axpyRowsGo(out []float32, ldo int, p []float32, ldp, rows int, v []float32, ldv, n, width int) {
	for r := range rows {
		o := out[r*ldo : r*ldo+width]
		for t, a := range p[r*ldp : r*ldp+n] {
			vt := v[t*ldv : t*ldv+width]
			for c, x := range vt {
				o[c] += a * x
			}
		}
	}
}
