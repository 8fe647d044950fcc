package quant

import (
	"fmt"
	"math"
	"math/rand/v2"
)

// GaussianSource returns n i.i.d. standard normal samples from a generator
// seeded with seed.
func GaussianSource(n int, seed uint64) []float32 {
	r := rand.New(rand.NewPCG(seed, 0x2545f4914f6cdd1d))
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(r.NormFloat64())
	}
	return x
}

// TrellisMSE encodes the samples x (a multiple of 256 of them) as trellis
// tiles of K bits per value with codebook cb after multiplying them by
// scale, and returns the mean squared error of the reconstruction
// decoded/scale against x. scale = CodebookScale matches a unit-variance
// source to the codebook's spread.
func TrellisMSE(x []float32, K int, cb Codebook, scale float64, workers int) (float64, error) {
	if len(x) == 0 || len(x)%TileLen != 0 {
		return 0, fmt.Errorf("quant: TrellisMSE: %d samples (want a positive multiple of %d)", len(x), TileLen)
	}
	if !(scale > 0) || math.IsInf(scale, 0) {
		return 0, fmt.Errorf("quant: TrellisMSE: scale %g", scale)
	}
	xs := make([]float32, len(x))
	for i, v := range x {
		xs[i] = float32(float64(v) * scale)
	}
	states := make([]uint16, len(x))
	dec := make([]float32, len(x))
	if _, err := EncodeTiles(states, dec, xs, K, cb, workers, nil); err != nil {
		return 0, err
	}
	var s float64
	for i, v := range x {
		d := float64(dec[i])/scale - float64(v)
		s += d * d
	}
	return s / float64(len(x)), nil
}

// LloydMaxMSE returns the mean squared error of the optimal (Lloyd–Max)
// scalar quantizer with 2^bits levels for a standard normal source,
// computed from the density (Lloyd's iteration to convergence): 0.3634 at
// 1 bit, 0.1175 at 2, 0.03454 at 3, 0.009497 at 4.
func LloydMaxMSE(bits int) float64 {
	n := 1 << uint(bits)
	// start from uniform levels over ±3σ
	lv := make([]float64, n)
	for i := range lv {
		lv[i] = -3 + 6*(float64(i)+0.5)/float64(n)
	}
	phi := func(t float64) float64 { return math.Exp(-t*t/2) / math.Sqrt(2*math.Pi) }
	cdf := func(t float64) float64 { return 0.5 * math.Erfc(-t/math.Sqrt2) }
	bounds := func() []float64 {
		b := make([]float64, n+1)
		b[0], b[n] = math.Inf(-1), math.Inf(1)
		for i := 1; i < n; i++ {
			b[i] = (lv[i-1] + lv[i]) / 2
		}
		return b
	}
	for it := 0; it < 20000; it++ {
		b := bounds()
		moved := 0.0
		for i := range lv {
			p := cdf(b[i+1]) - cdf(b[i])
			if p <= 0 {
				continue
			}
			c := (phi(b[i]) - phi(b[i+1])) / p // E[x | cell]
			moved = math.Max(moved, math.Abs(c-lv[i]))
			lv[i] = c
		}
		if moved < 1e-13 {
			break
		}
	}
	// D = E[x²] − Σ p_i c_i² for centroid levels
	b := bounds()
	d := 1.0
	for i := range lv {
		d -= (cdf(b[i+1]) - cdf(b[i])) * lv[i] * lv[i]
	}
	return d
}

// GaussianBound returns the rate-distortion bound D(R) = 2^(−2R) of a unit
// Gaussian source at R bits per sample.
func GaussianBound(bits float64) float64 { return math.Exp2(-2 * bits) }

// RDPoint is one rate-distortion measurement of a trellis code on a unit
// Gaussian source.
type RDPoint struct {
	Bits     int      // K, bits per sample
	Codebook Codebook // the code
	// Scale multiplies the source before encoding (the reconstruction
	// divides by it): the MSE-optimal one found by TrellisRD.
	Scale    float64
	MSE      float64 // mean squared error per sample
	Bound    float64 // 2^(−2K)
	LloydMax float64 // the optimal scalar quantizer's MSE at K bits
	// FreeMSE is the MSE of a Viterbi search with free start and end
	// states (not a valid tile encoding: it spends 16−K more bits per
	// tile), for comparison with figures measured that way.
	FreeMSE float64
}

// CodebookStd returns the standard deviation of the codebook's values
// over all states (CodebookScale for 3INST; ≈ 1 for MUL1 and 1MAD).
func (c Codebook) CodebookStd() float64 {
	var s, s2 float64
	for _, v := range c.Table() {
		s += float64(v)
		s2 += float64(v) * float64(v)
	}
	m := s / 65536
	return math.Sqrt(s2/65536 - m*m)
}

// TrellisRD measures the tail-biting trellis code (K bits, codebook cb) on
// the samples x (i.i.d. unit Gaussian, a multiple of 256 of them): it
// searches the encoder scale that minimizes the MSE on up to 2^14 of the
// samples (golden section over [0.75, 1.1] × the codebook's standard
// deviation) and reports the MSE over all of them at that scale.
func TrellisRD(x []float32, K int, cb Codebook, workers int) (RDPoint, error) {
	p := RDPoint{Bits: K, Codebook: cb, Bound: GaussianBound(float64(K)), LloydMax: LloydMaxMSE(K)}
	if len(x) == 0 || len(x)%TileLen != 0 {
		return p, fmt.Errorf("quant: TrellisRD: %d samples (want a positive multiple of %d)", len(x), TileLen)
	}
	sub := x[:min(len(x), 1<<14)]
	sd := cb.CodebookStd()
	f := func(s float64) float64 {
		m, err := TrellisMSE(sub, K, cb, s, workers)
		if err != nil {
			return math.Inf(1)
		}
		return m
	}
	s, err := goldenMin(f, 0.75*sd, 1.1*sd, 10)
	if err != nil {
		return p, err
	}
	p.Scale = s
	if p.MSE, err = TrellisMSE(x, K, cb, s, workers); err != nil {
		return p, err
	}
	p.FreeMSE = freeMSE(x, K, cb, s)
	return p, nil
}

// goldenMin minimizes f over [a, b] with n golden-section steps.
func goldenMin(f func(float64) float64, a, b float64, n int) (float64, error) {
	g := (math.Sqrt(5) - 1) / 2
	c, d := b-g*(b-a), a+g*(b-a)
	fc, fd := f(c), f(d)
	for range n {
		if fc < fd {
			b, d, fd = d, c, fc
			c = b - g*(b-a)
			fc = f(c)
		} else {
			a, c, fc = c, d, fd
			d = a + g*(b-a)
			fd = f(d)
		}
	}
	if fc < fd {
		return c, nil
	}
	return d, nil
}

// freeMSE encodes each tile with a plain Viterbi search (free start and
// end states, in sequence order) and returns the MSE.
func freeMSE(x []float32, K int, cb Codebook, scale float64) float64 {
	v := getViterbi(K, cb)
	defer viterbiPools[K][cb].Put(v)
	ne := 1 << uint(16-K)
	var sum float64
	var xs [TileLen]float32
	for t := 0; t < len(x)/TileLen; t++ {
		for i := range xs {
			xs[i] = float32(float64(x[t*TileLen+i]) * scale)
		}
		v.forward(&xs, 0, -1, TileLen)
		e := argminF32(v.cost[(TileLen-1)&1][:ne])
		for i := TileLen - 1; i >= 0; i-- {
			w := int(v.bp[i*ne+e])<<uint(16-K) | e
			d := float64(v.val[w])/scale - float64(x[t*TileLen+i])
			sum += d * d
			e = w >> uint(K)
		}
	}
	return sum / float64(len(x))
}
