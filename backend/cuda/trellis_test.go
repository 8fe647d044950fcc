//go:build linux && !nocuda

package cuda

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/marlin-llm/marlin/backend/cpu"
	"github.com/marlin-llm/marlin/dtype"
	"github.com/marlin-llm/marlin/quant"
)

// funnelL is __funnelshift_l: the high word of (hi:lo) << (s & 31).
func funnelL(lo, hi uint32, s int) uint32 {
	return uint32((uint64(hi)<<32 | uint64(lo)) << uint(s&31) >> 32)
}

// tdecodeStates is a host model of tdecode's state extraction in
// trellis.cu (window words, alignment, 32-bit fields, the K = 4 and 8
// pairs): the 8 states of lane's positions 8·lane … 8·lane+7.
func tdecodeStates(tw []uint32, K, lane int) (s [8]uint32) {
	b0 := (8*lane+1)*K - 16
	if b0 < 0 {
		b0 += 256 * K
	}
	i0, r := b0>>5, b0&31
	i1 := i0 + 1
	if i1 == 8*K {
		i1 = 0
	}
	i2 := i1 + 1
	if i2 == 8*K {
		i2 = 0
	}
	w0, w1 := tw[i0], tw[i1]
	if K <= 4 {
		hi, lo := funnelL(w1, w0, r), w1<<uint(r)
		field := func(p int) uint32 {
			if p == 0 {
				return hi
			}
			return funnelL(lo, hi, p)
		}
		if K == 4 {
			for j := range 4 {
				f := field(4 * j)
				s[j], s[j+4] = f>>16, f&0xffff
			}
		} else {
			for j := range 8 {
				s[j] = field(j*K) >> 16
			}
		}
		return
	}
	w2 := tw[i2]
	hi, mid, lo := funnelL(w1, w0, r), funnelL(w2, w1, r), w2<<uint(r)
	field := func(p int) uint32 {
		switch {
		case p == 0:
			return hi
		case p < 32:
			return funnelL(mid, hi, p)
		case p == 32:
			return mid
		}
		return funnelL(lo, mid, p-32)
	}
	if K == 8 {
		for j := 0; j < 8; j += 4 {
			f0, f1 := field(8*j), field(8*j+8)
			s[j], s[j+2], s[j+1], s[j+3] = f0>>16, f0&0xffff, f1>>16, f1&0xffff
		}
		return
	}
	for j := range 8 {
		s[j] = field(j*K) >> 16
	}
	return
}

// TestTrellisWindows checks the kernel's state extraction (host model
// above) against quant.UnpackTile for every K, lane and random tiles: runs
// without a GPU.
func TestTrellisWindows(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for K := 1; K <= quant.MaxTrellisBits; K++ {
		for range 20 {
			tile := randBytes(rng, 32*K)
			var want [quant.TileLen]uint16
			quant.UnpackTile(&want, tile, K)
			tw := make([]uint32, 8*K)
			for i := range tw {
				tw[i] = binary.LittleEndian.Uint32(tile[4*i:])
			}
			for lane := range 32 {
				got := tdecodeStates(tw, K, lane)
				for j := range 8 {
					if got[j] != uint32(want[8*lane+j]) {
						t.Fatalf("K %d lane %d state %d: got %#x, want %#x", K, lane, j, got[j], want[8*lane+j])
					}
				}
			}
		}
	}
}

// exl3Weight builds a random EXL3 weight of logical shape [n, k]: random
// trellis bytes (every bit pattern is a valid tile), suh and svh random
// signs times random magnitudes.
func exl3Weight(K int, cb quant.Codebook) func(rng *rand.Rand, n, k int) *quant.Weight {
	return func(rng *rand.Rand, n, k int) *quant.Weight {
		w := &quant.Weight{Name: fmt.Sprintf("exl3-k%d-%v", K, cb), Format: quant.EXL3, Out: n, In: k, Bits: K, Codebook: cb}
		inP, outP := w.PaddedDims()
		w.Data = randBytes(rng, (inP/16)*(outP/16)*32*K)
		signed := func(n int, lo, hi float64) []byte {
			b := f16Scales(rng, n, lo, hi)
			for i := 0; i < n; i++ {
				if rng.IntN(2) == 0 {
					b[2*i+1] |= 0x80
				}
			}
			return b
		}
		w.Scales = signed(inP, 0.3, 1.0)
		w.Zeros = signed(outP, 0.005, 0.02)
		if err := w.Validate(); err != nil {
			panic(err)
		}
		return w
	}
}

// trellisScale returns, for every (m, n), the error scale of the fp16
// kernels: |svh_n|/√128 · Σ_{n' in n's block of 128} Σ_k |x'_mk·ŵ_kn'|
// (x' = H(pad(x) ⊙ suh) in float64, ŵ the decoded tiles): rounding x' to
// fp16 changes each product by at most 2^-11 of it, and the output
// rotation adds block sums.
func trellisScale(w *quant.Weight, x []float32, M int) []float64 {
	inP, outP := w.PaddedDims()
	xh := make([]float64, M*inP)
	for m := range M {
		for k := range w.In {
			xh[m*inP+k] = float64(x[m*w.In+k]) * float64(dtype.F16ToF32(binary.LittleEndian.Uint16(w.Scales[2*k:])))
		}
		quant.HadamardBlocks64(xh[m*inP:(m+1)*inP], quant.EXL3Block)
	}
	abs := make([]float64, M*outP) // Σ_k |x'·ŵ|
	var tile [quant.TileLen]float32
	for kt := range inP / 16 {
		for nt := range outP / 16 {
			quant.DecodeTile(&tile, w.EXL3Tile(kt, nt), w.Bits, w.Codebook)
			for m := range M {
				for r := range 16 {
					xv := math.Abs(xh[m*inP+kt*16+r])
					for c := range 16 {
						abs[m*outP+nt*16+c] += xv * math.Abs(float64(tile[r*16+c]))
					}
				}
			}
		}
	}
	out := make([]float64, M*w.Out)
	for m := range M {
		for n := range w.Out {
			b0 := n / quant.EXL3Block * quant.EXL3Block
			var s float64
			for j := b0; j < b0+quant.EXL3Block; j++ {
				s += abs[m*outP+j]
			}
			sv := math.Abs(float64(dtype.F16ToF32(binary.LittleEndian.Uint16(w.Zeros[2*n:]))))
			out[m*w.Out+n] = sv * s / math.Sqrt(quant.EXL3Block)
		}
	}
	return out
}

// TestTrellisMatMul checks the EXL3 kernels against the CPU backend's
// trellis kernel on random weights of odd shapes (padded dimensions,
// split-K), every K and codebook, M from 1 to 100 (M ≤ 16 the decode
// kernel, 17 two passes of it, ≥ 64 the cuBLAS path where available), the
// output poisoned before each run. Tolerance: 2·2^-11 of trellisScale
// (x' in fp16, exact weights, fp32 sums).
func TestTrellisMatMul(t *testing.T) {
	g := gpu(t)
	c := cpu.New(2)
	rng := rand.New(rand.NewPCG(31, 32))
	type tcase struct {
		K    int
		cb   quant.Codebook
		n, k int
		ms   []int
	}
	var cases []tcase
	for K := 1; K <= quant.MaxTrellisBits; K++ {
		cases = append(cases, tcase{K, quant.Codebook3INST, 70, 200, []int{1, 3, 9, 16}})
	}
	cases = append(cases,
		tcase{4, quant.Codebook3INST, 130, 4096, []int{1, 2, 8, 16, 17, 64}},
		tcase{2, quant.Codebook3INST, 1000, 384, []int{1, 5, 16, 100}},
		tcase{3, quant.Codebook3INST, 260, 1500, []int{1, 16}},
		tcase{2, quant.CodebookMCG, 300, 700, []int{1, 12, 64}},
		tcase{4, quant.CodebookMCG, 128, 256, []int{1, 16}},
		tcase{8, quant.CodebookMCG, 96, 512, []int{3}},
		tcase{2, quant.CodebookMUL1, 300, 700, []int{1, 12, 64}},
		tcase{4, quant.CodebookMUL1, 128, 256, []int{1, 16}},
		tcase{6, quant.CodebookMUL1, 200, 300, []int{7}},
	)
	for _, cs := range cases {
		w := exl3Weight(cs.K, cs.cb)(rng, cs.n, cs.k)
		gw, cw := loadBoth(t, g, c, w)
		for _, M := range cs.ms {
			xv := randn(rng, M*cs.k, 1)
			got := gpuMatMul(t, g, gw, xv, M)
			cx, cy := c.NewTensor(M, cs.k), c.NewTensor(M, cs.n)
			c.Write(cx, xv)
			c.MatMul(cy, cx, cw)
			want := make([]float32, M*cs.n)
			if err := c.Read(want, cy); err != nil {
				t.Fatal(err)
			}
			what := fmt.Sprintf("%s N%d K%d M%d", w.Name, cs.n, cs.k, M)
			checkScaled(t, what, got, want, trellisScale(w, xv, M), 2*math.Ldexp(1, -11))
			var num, den float64
			for i := range got {
				d := float64(got[i]) - float64(want[i])
				num += d * d
				den += float64(want[i]) * float64(want[i])
			}
			if testing.Verbose() && M == cs.ms[0] {
				t.Logf("%s: relative error %.2e", what, math.Sqrt(num/den))
			}
		}
	}
}

// TestTrellisSpeed times the EXL3 decode matmul on the Llama-3-8B
// projection shapes (MARLIN_QMM_SHAPES as TestQMatMulSpeed) for K = 2, 3,
// 4 (MARLIN_TRELLIS_BITS=2,4,… to change) at M = 1 and 16, as
// TestQMatMulSpeed does (weights rotated among copies exceeding the L2
// cache, CUDA events, the whole matmul: input rotation, decode, output
// rotation), printing "qmm exl3-kK K N M µs GB/s" lines for perf_table.py.
func TestTrellisSpeed(t *testing.T) {
	b := gpu(t)
	if testing.Short() {
		t.Skip("short")
	}
	shapes := speedShapes()
	Ks := []int{2, 3, 4}
	if s := os.Getenv("MARLIN_TRELLIS_BITS"); s != "" {
		Ks = nil
		for _, f := range strings.Split(s, ",") {
			k, _ := strconv.Atoi(f)
			Ks = append(Ks, k)
		}
	}
	ms := []int{1, 16}
	if s := os.Getenv("MARLIN_TRELLIS_M"); s != "" {
		ms = nil
		for _, f := range strings.Split(s, ",") {
			m, _ := strconv.Atoi(f)
			ms = append(ms, m)
		}
	}
	rng := rand.New(rand.NewPCG(19, 19))
	for _, sh := range shapes {
		K, N := sh[0], sh[1]
		for _, bitsK := range Ks {
			w := exl3Weight(bitsK, quant.Codebook3INST)(rng, N, K)
			mats := loadCopies(t, b, w)
			for _, M := range ms {
				x, y := b.NewTensor(M, K), b.NewTensor(M, N)
				b.Write(x, randn(rng, M*K, 1))
				b.SetGraphs(false)
				timed, done := matmulTimer(b, y, x, mats)
				one := timed(len(mats))
				reps := max(3, min(20*len(mats), int(50*time.Millisecond/max(one, time.Microsecond))))
				var ds []time.Duration
				for range 3 {
					ds = append(ds, timed(reps))
				}
				d := median3(ds)
				// the breakdown: each kernel alone
				var parts []string
				if os.Getenv("MARLIN_TRELLIS_PARTS") != "" && M <= 16 {
					for _, only := range []int{1, 2, 3} {
						trellisOnly = only
						parts = append(parts, fmt.Sprintf("%.2f", float64(timed(reps).Nanoseconds())/1e3))
						trellisOnly = 0
					}
					fmt.Printf("parts exl3-k%d %d %d %d in/mv/out µs: %s\n", bitsK, K, N, M, strings.Join(parts, " "))
				}
				b.SetGraphs(true)
				done()
				mustSync(t, b)
				fmt.Printf("qmm exl3-k%d %d %d %d %.2f %.1f\n", bitsK, K, N, M, float64(d.Nanoseconds())/1e3, float64(mats[0].Bytes())/d.Seconds()/1e9)
			}
		}
	}
}

func median3(d []time.Duration) time.Duration {
	a, b2, c := d[0], d[1], d[2]
	if a > b2 {
		a, b2 = b2, a
	}
	if b2 > c {
		b2 = c
	}
	if a > b2 {
		return a
	}
	return b2
}

// TestTrellisViterbi checks the GPU search against quant.EncodeTiles (the
// CPU search) on random Gaussian tiles: the states must be identical, for
// K = 2 … 8 and the three codebooks, with more tiles than blocks (the
// persistent grid); then reports the throughput of both in weights/s
// (MARLIN_VITERBI_TILES tiles on the GPU, a sixteenth of them on the CPU).
func TestTrellisViterbi(t *testing.T) {
	g := gpu(t)
	rng := rand.New(rand.NewPCG(41, 42))
	type vcase struct {
		K     int
		cb    quant.Codebook
		tiles int
	}
	cases := []vcase{{2, quant.Codebook3INST, 150}, {3, quant.Codebook3INST, 40}, {4, quant.Codebook3INST, 40},
		{2, quant.CodebookMCG, 20}, {4, quant.CodebookMUL1, 20}, {5, quant.Codebook3INST, 8}, {8, quant.CodebookMUL1, 4}}
	if testing.Short() {
		cases = cases[:3]
	}
	for _, cs := range cases {
		x := randn(rng, cs.tiles*quant.TileLen, 1.2)
		want := make([]uint16, len(x))
		if _, err := quant.EncodeTiles(want, nil, x, cs.K, cs.cb, 0, nil); err != nil {
			t.Fatal(err)
		}
		got := make([]uint16, len(x))
		if err := g.EncodeTiles(got, x, cs.K, cs.cb); err != nil {
			t.Fatal(err)
		}
		bad := 0
		for i := range want {
			if got[i] != want[i] {
				if bad < 3 {
					t.Errorf("K %d %v: tile %d position %d: state %#x, CPU %#x", cs.K, cs.cb, i/256, i%256, got[i], want[i])
				}
				bad++
			}
		}
		if bad > 0 {
			t.Errorf("K %d %v: %d of %d states differ", cs.K, cs.cb, bad, len(want))
		}
	}
	if testing.Short() || os.Getenv("MARLIN_VITERBI_TILES") == "" {
		return
	}
	n, _ := strconv.Atoi(os.Getenv("MARLIN_VITERBI_TILES"))
	for _, K := range []int{2, 3, 4} {
		x := randn(rng, n*quant.TileLen, 1.2)
		st := make([]uint16, len(x))
		g.EncodeTiles(st[:256*8], x[:256*8], K, quant.Codebook3INST) // warm-up
		t0 := time.Now()
		if err := g.EncodeTiles(st, x, K, quant.Codebook3INST); err != nil {
			t.Fatal(err)
		}
		gs := time.Since(t0).Seconds()
		nc := max(16, n/16)
		t0 = time.Now()
		quant.EncodeTiles(st[:nc*256], nil, x[:nc*256], K, quant.Codebook3INST, 0, nil)
		cs := time.Since(t0).Seconds()
		fmt.Printf("viterbi K%d: GPU %d tiles in %.3f s = %.3g weights/s; CPU (%d threads) %d tiles in %.3f s = %.3g weights/s\n",
			K, n, gs, float64(n*256)/gs, runtime.GOMAXPROCS(0), nc, cs, float64(nc*256)/cs)
	}
}
