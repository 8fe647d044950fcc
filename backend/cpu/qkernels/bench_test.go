package qkernels

import (
	"fmt"
	"math/rand"
	"os"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"unsafe"

	"github.com/marlin-llm/marlin/backend/cpu/kernels"
	"github.com/marlin-llm/marlin/dtype"
	"github.com/marlin-llm/marlin/quant"
)

// Benchmarks on the K×N shapes of Llama-3.2-1B, 2 goroutines (each a
// half of [0, N)), weights rotated through ≥ 512 MB of copies so that the
// 32 MB L3 does not help. Metrics: GB/s of weight bytes (data + scales +
// zeros) streamed, Gw/s weights per second, and for M > 1 also the
// weight·rows per second. Run:
//
//	go test -run XXX -bench . -benchtime 2s ./backend/cpu/qkernels
//
// QBENCH_FORMATS=int4g32,bf16 selects formats; QBENCH_M=1,16 the rows.

var benchShapes = [][2]int{{2048, 2048}, {2048, 512}, {2048, 8192}, {8192, 2048}}

const rotateBytes = 512 << 20

type benchFormat struct {
	name string
	make func(rng *rand.Rand, out, in int) *quant.Weight
}

func gptqBench(bits, group int, sym bool) func(*rand.Rand, int, int) *quant.Weight {
	return func(rng *rand.Rand, out, in int) *quant.Weight {
		g := group
		if g == 0 {
			g = in
		}
		return fastRandomGPTQ(rng, out, in, bits, g, sym)
	}
}

// fastRandomGPTQ fills the packed buffers with random bytes directly (valid
// for any bit width: every bit pattern is a valid code) and random fp16
// scales; symmetric weights get the v1 zero points of real symmetric
// checkpoints (2^(bits−1) − 1 stored everywhere), asymmetric ones random.
func fastRandomGPTQ(rng *rand.Rand, out, in, bits, group int, sym bool) *quant.Weight {
	groups := in / group
	w := &quant.Weight{Name: "bench", Format: quant.GPTQ, Out: out, In: in, Bits: bits, Group: group, Sym: sym, ZeroOffset: 1}
	w.Data = randBytes(rng, in*bits/32*out*4)
	w.Zeros = randBytes(rng, groups*((out*bits+31)/32)*4)
	if sym {
		z := uint64(1)<<uint(bits-1) - 1
		for i := range w.Zeros {
			w.Zeros[i] = 0
		}
		for p := 0; p < out*bits; p += bits {
			for b := 0; b < bits; b++ {
				if z>>uint(b)&1 != 0 {
					w.Zeros[(p+b)/8] |= 1 << uint((p+b)%8)
				}
			}
		}
		zcols := 4 * ((out*bits + 31) / 32)
		for g := 1; g < groups; g++ {
			copy(w.Zeros[g*zcols:(g+1)*zcols], w.Zeros[:zcols])
		}
		w.ZerosUniform = true
	}
	w.Scales = randScales(rng, groups*out)
	return w
}

func randBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	rng.Read(b)
	return b
}

func randScales(rng *rand.Rand, n int) []byte {
	b := make([]byte, 2*n)
	for i := 0; i < n; i++ {
		h := dtype.F32ToF16(float32(0.001 + rng.Float64()*0.01))
		b[2*i], b[2*i+1] = byte(h), byte(h>>8)
	}
	return b
}

// actBench: int4 with a random act-order g_idx (portable kernel).
func actBench(bits, group int) func(*rand.Rand, int, int) *quant.Weight {
	return func(rng *rand.Rand, out, in int) *quant.Weight {
		w := fastRandomGPTQ(rng, out, in, bits, group, true)
		w.GIdx = make([]int32, in)
		for i, p := range rng.Perm(in) {
			w.GIdx[p] = int32(i / group)
		}
		return w
	}
}

func fpBench(f quant.Format, group int) func(*rand.Rand, int, int) *quant.Weight {
	return func(rng *rand.Rand, out, in int) *quant.Weight {
		w := &quant.Weight{Name: "bench", Format: f, Out: out, In: in, Group: group, Bits: 4, Sym: true}
		switch f {
		case quant.FP8:
			w.Bits, w.Group = 8, in
			w.Data = randBytes(rng, out*in)
			for i := range w.Data {
				if w.Data[i]&0x7f == 0x7f {
					w.Data[i] = 0
				}
			}
			w.Scales = make([]byte, 4*out)
			for i := 0; i < out; i++ {
				*(*float32)(unsafe.Pointer(&w.Scales[4*i])) = 0.01
			}
		case quant.FP4:
			w.Data = randBytes(rng, out*in/2)
			w.Scales = randScales(rng, out*in/group)
		case quant.MXFP4:
			w.Data = randBytes(rng, out*in/2)
			w.Scales = make([]byte, out*in/32)
			for i := range w.Scales {
				w.Scales[i] = byte(120 + rng.Intn(8))
			}
		case quant.NVFP4:
			w.Data = randBytes(rng, out*in/2)
			w.Scales = make([]byte, out*in/16)
			for i := range w.Scales {
				w.Scales[i] = byte(0x30 + rng.Intn(0x30))
			}
			w.GlobalScale = 1e-3
		}
		if err := w.Validate(); err != nil {
			panic(err)
		}
		return w
	}
}

func denseBench(rng *rand.Rand, out, in int) *quant.Weight {
	w := &quant.Weight{Name: "bench", Format: quant.Dense, DType: dtype.BF16, Out: out, In: in}
	w.Data = make([]byte, 2*out*in)
	for i := 0; i < out*in; i++ {
		h := dtype.F32ToBF16(float32(rng.NormFloat64() * 0.02))
		w.Data[2*i], w.Data[2*i+1] = byte(h), byte(h>>8)
	}
	return w
}

var benchFormats = []benchFormat{
	{"bf16", denseBench},
	{"int4g32", gptqBench(4, 32, true)},
	{"int4g32asym", gptqBench(4, 32, false)},
	{"int4g128act", actBench(4, 128)},
	{"int4g128", gptqBench(4, 128, true)},
	{"int4pc", gptqBench(4, 0, true)},
	{"int8g128", gptqBench(8, 128, true)},
	{"int3g128", gptqBench(3, 128, true)},
	{"int2g64", gptqBench(2, 64, true)},
	{"fp8", fpBench(quant.FP8, 0)},
	{"fp4g32", fpBench(quant.FP4, 32)},
	{"fp4g128", fpBench(quant.FP4, 128)},
	{"mxfp4", fpBench(quant.MXFP4, 32)},
	{"nvfp4", fpBench(quant.NVFP4, 16)},
}

func weightBytes(w *quant.Weight) int {
	return len(w.Data) + len(w.Scales) + len(w.Zeros) + 4*len(w.GIdx)
}

// replicate returns copies of w (fresh memory each) totalling ≥ rotateBytes.
func replicate(w *quant.Weight) []*quant.Weight {
	n := max(2, (rotateBytes+weightBytes(w)-1)/weightBytes(w))
	ws := make([]*quant.Weight, n)
	for i := range ws {
		c := *w
		c.Data = append([]byte(nil), w.Data...)
		c.Scales = append([]byte(nil), w.Scales...)
		if w.Zeros != nil {
			c.Zeros = append([]byte(nil), w.Zeros...)
		}
		ws[i] = &c
	}
	return ws
}

// pool2 runs f(0) on the caller and f(1) on a helper goroutine that
// waits for work by spinning, as the CPU backend's pool does between the
// ops of a forward pass (a hand-over through channels cost ~20 µs a call
// on dev-cpu, which diluted what the benchmarks compare).
type pool2 struct {
	f         atomic.Pointer[func(int)]
	gen, done atomic.Uint64
	quit      atomic.Bool
}

func newPool2() *pool2 {
	p := &pool2{}
	go func() {
		var seen uint64
		for !p.quit.Load() {
			g := p.gen.Load()
			if g == seen {
				runtime.Gosched()
				continue
			}
			seen = g
			(*p.f.Load())(1)
			p.done.Store(g)
		}
	}()
	return p
}

func (p *pool2) run(f func(int)) {
	p.f.Store(&f)
	g := p.gen.Add(1)
	f(0)
	for p.done.Load() != g {
		runtime.Gosched()
	}
}

func (p *pool2) close() { p.quit.Store(true) }

func selected(env, name string) bool {
	v := os.Getenv(env)
	if v == "" {
		return true
	}
	for _, s := range strings.Split(v, ",") {
		if s == name {
			return true
		}
	}
	return false
}

func BenchmarkMatMul(b *testing.B) {
	p := newPool2()
	defer p.close()
	rng := rand.New(rand.NewSource(1))
	for _, f := range benchFormats {
		if !selected("QBENCH_FORMATS", f.name) {
			continue
		}
		for _, sh := range benchShapes {
			K, N := sh[0], sh[1]
			ws := replicate(f.make(rng, N, K))
			for _, w := range ws {
				Prepare(w) // the working copies a loader makes, outside the timing
			}
			for _, M := range []int{1, 16} {
				if !selected("QBENCH_M", fmt.Sprint(M)) {
					continue
				}
				x := randX(rng, M*K)
				dst := make([]float32, M*N)
				b.Run(fmt.Sprintf("%s/K%dxN%d/M%d", f.name, K, N, M), func(b *testing.B) {
					i := 0
					var w *quant.Weight
					work := func(g int) {
						h := N / 2
						if f.name == "bf16" {
							d := unsafe.Slice((*uint16)(unsafe.Pointer(&w.Data[0])), len(w.Data)/2)
							kernels.MatMulBF16(dst, N, x, M, K, d, g*h, (g+1)*h)
							return
						}
						MatMul(dst, N, x, M, w, g*h, (g+1)*h)
					}
					b.ResetTimer()
					for b.Loop() {
						w = ws[i%len(ws)]
						i++
						p.run(work)
					}
					s := b.Elapsed().Seconds() / float64(b.N)
					b.ReportMetric(float64(weightBytes(ws[0]))/s/1e9, "GB/s")
					b.ReportMetric(float64(K*N)/s/1e9, "Gw/s")
					b.ReportMetric(s*1e6, "µs/matmul")
					if M > 1 {
						b.ReportMetric(float64(M*K*N)/s/1e9, "Gw·rows/s")
					}
				})
			}
			ws = nil
			runtime.GC()
		}
	}
}

// BenchmarkCopy measures the machine's memory bandwidth as a 2-goroutine
// copy of 1 GiB: "GB/s" counts the bytes copied, "traffic_GB/s" read +
// written.
func BenchmarkCopy(b *testing.B) {
	const sz = 1 << 30
	src, dst := make([]byte, sz), make([]byte, sz)
	for i := range src {
		src[i] = byte(i)
	}
	copy(dst, src)
	p := newPool2()
	defer p.close()
	b.SetBytes(sz)
	for b.Loop() {
		p.run(func(g int) {
			copy(dst[g*sz/2:(g+1)*sz/2], src[g*sz/2:(g+1)*sz/2])
		})
	}
	s := b.Elapsed().Seconds() / float64(b.N)
	b.ReportMetric(sz/s/1e9, "GB/s")
	b.ReportMetric(2*sz/s/1e9, "traffic_GB/s")
}

// BenchmarkSmallCalls measures one goroutine's calls on small, cache-hot
// shapes (the batched decode of the server: a few rows against 256–2048
// wide matrices), where the per-call costs of the Go drivers show:
// ns per call and weight·rows per second.
func BenchmarkSmallCalls(b *testing.B) {
	rng := rand.New(rand.NewSource(3))
	for _, f := range benchFormats {
		if !selected("QBENCH_FORMATS", f.name) || (os.Getenv("QBENCH_FORMATS") == "" && f.name != "int4g32" && f.name != "fp4g32" && f.name != "bf16") {
			continue
		}
		for _, sh := range [][2]int{{256, 256}, {512, 512}, {2048, 512}, {2048, 2048}} {
			K, N := sh[0], sh[1]
			w := f.make(rng, N, K)
			for _, M := range []int{1, 2, 4, 16, 64} {
				if !selected("QBENCH_M", fmt.Sprint(M)) {
					continue
				}
				x := randX(rng, M*K)
				dst := make([]float32, M*N)
				b.Run(fmt.Sprintf("%s/K%dxN%d/M%d", f.name, K, N, M), func(b *testing.B) {
					for b.Loop() {
						if f.name == "bf16" {
							kernels.MatMulBF16(dst, N, x, M, K, unsafe.Slice((*uint16)(unsafe.Pointer(&w.Data[0])), len(w.Data)/2), 0, N)
						} else {
							MatMul(dst, N, x, M, w, 0, N)
						}
					}
					s := b.Elapsed().Seconds() / float64(b.N)
					b.ReportMetric(float64(M*K*N)/s/1e9, "Gw·rows/s")
				})
			}
		}
	}
}
