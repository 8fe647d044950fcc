package kernels

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"
)

// Benchmarks. Run them with
//
//	go test -bench . -run '^$' ./backend/cpu/kernels
//
// They split the output range over benchThreads goroutines (one per core,
// as the CPU backend does) and report:
//
//   - BenchmarkMemoryBandwidth: the machine's memory bandwidth in GB/s, by a
//     copy() of 1 GiB buffers (bytes read + written) and by a read-only
//     pass (MemRead), on benchThreads goroutines and on one.
//   - BenchmarkDecode{BF16,F16,F32}: M = 1 on the Llama-3.2-1B layer shapes;
//     GB/s of weights read, the copy and read bandwidth measured right
//     after the loop (copyGB/s, readGB/s) and the ratios (%copy, %read).
//     The weights rotate through ≥ 1 GiB of buffers so the 32 MB L3 never
//     holds them.
//   - BenchmarkPrefill{F32,F16,BF16}: M = 64..512; GFLOP/s (2·M·N·K per
//     call) and that as a percentage of the measured FMA peak (%peak).
//   - BenchmarkPeak: the FMA peak (12 independent ymm FMA chains per core)
//     and the core clock (a chain of dependent adds).
//
// GB are 10⁹ bytes, GFLOP 10⁹ flops. The memory bandwidth of a shared VM
// can change from one minute to the next; compare a decode result with the
// copyGB/s and readGB/s on its own line. The buffers need about 3.3 GB of
// RAM.

var benchThreads = runtime.GOMAXPROCS(0)

// team is a minimal worker pool: benchThreads−1 goroutines that spin on a
// sequence number, plus the calling goroutine, each running job(part). It
// stands in for the backend's per-core workers; spinning keeps the
// hand-off latency (µs for a parked goroutine) out of the kernel numbers
// of the small shapes. After a short spin the waiters yield (Gosched), so
// that runnable goroutines (the GC's workers) are not starved of the Ps
// until the 10 ms preemption tick.
type team struct {
	n    int
	seq  atomic.Uint64
	done atomic.Int64
	stop atomic.Bool
	job  func(part int)
	wg   sync.WaitGroup
}

func newTeam(n int) *team {
	t := &team{n: n}
	for i := 1; i < n; i++ {
		t.wg.Add(1)
		go func() {
			defer t.wg.Done()
			var last uint64
			for {
				s := t.seq.Load()
				for spins := 0; s == last; spins++ {
					if t.stop.Load() {
						return
					}
					if spins > 1000 {
						runtime.Gosched()
					}
					s = t.seq.Load()
				}
				last = s
				t.job(i)
				t.done.Add(1)
			}
		}()
	}
	return t
}

// run executes job(0..n-1) in parallel and waits for all parts.
func (t *team) run(job func(part int)) {
	t.job = job
	t.done.Store(0)
	t.seq.Add(1) // publishes job and done to the workers
	job(0)
	for spins := 0; t.done.Load() != int64(t.n-1); spins++ {
		if spins > 1000 {
			runtime.Gosched()
		}
	}
}

func (t *team) close() {
	t.stop.Store(true)
	t.wg.Wait()
}

// split returns the part-th of n contiguous pieces of [0, N), with piece
// boundaries rounded to multiples of 4 (a kernel group).
func split(N, n, part int) (int, int) {
	lo := (N * part / n) &^ 3
	hi := (N * (part + 1) / n) &^ 3
	if part == n-1 {
		hi = N
	}
	return lo, hi
}

// ---- memory bandwidth ----

const bwBytes = 1 << 30

var bwBufs struct {
	once     sync.Once
	src, dst []byte
}

func bandwidthBuffers() ([]byte, []byte) {
	bwBufs.once.Do(func() {
		bwBufs.src = make([]byte, bwBytes)
		bwBufs.dst = make([]byte, bwBytes)
		for i := range bwBufs.src {
			bwBufs.src[i] = byte(i * 7)
		}
		copy(bwBufs.dst, bwBufs.src) // fault all pages in
	})
	return bwBufs.src, bwBufs.dst
}

var sink atomic.Uint64

func copyPass(tm *team, src, dst []byte) {
	tm.run(func(part int) {
		lo, hi := split(len(src), tm.n, part)
		copy(dst[lo:hi], src[lo:hi])
	})
}

func readPass(tm *team, src []byte) {
	tm.run(func(part int) {
		lo, hi := split(len(src)/256, tm.n, part)
		sink.Add(MemRead(&src[lo*256], (hi-lo)*256))
	})
}

// (copyPass and readPass allocate a closure per 1 GiB pass: negligible.)

// refBandwidth measures the copy and read bandwidth with tm right now
// (best of 3 passes each, ~0.3 s). The decode benchmarks call it right
// after their own loop, so that their %copy and %read compare numbers taken
// under the same conditions (this machine's bandwidth varies with what its
// neighbours do).
func refBandwidth(tm *team) (copyGBs, readGBs float64) {
	src, dst := bandwidthBuffers()
	for range 3 {
		t0 := time.Now()
		copyPass(tm, src, dst)
		copyGBs = max(copyGBs, 2*bwBytes/time.Since(t0).Seconds()/1e9)
		t0 = time.Now()
		readPass(tm, src)
		readGBs = max(readGBs, bwBytes/time.Since(t0).Seconds()/1e9)
	}
	return copyGBs, readGBs
}

func BenchmarkMemoryBandwidth(b *testing.B) {
	src, dst := bandwidthBuffers()
	for _, threads := range []int{benchThreads, 1} {
		tm := newTeam(threads)
		b.Run(fmt.Sprintf("copy/threads=%d", threads), func(b *testing.B) {
			for b.Loop() {
				copyPass(tm, src, dst)
			}
			b.ReportMetric(2*bwBytes*float64(b.N)/b.Elapsed().Seconds()/1e9, "GB/s")
		})
		b.Run(fmt.Sprintf("read/threads=%d", threads), func(b *testing.B) {
			for b.Loop() {
				readPass(tm, src)
			}
			b.ReportMetric(bwBytes*float64(b.N)/b.Elapsed().Seconds()/1e9, "GB/s")
		})
		tm.close()
	}
}

// ---- decode (M = 1) ----

// decodeShapes are the K×N matmuls of a Llama-3.2-1B layer (q/o, k/v,
// gate/up, down) and the LM head.
var decodeShapes = [][2]int{{2048, 2048}, {2048, 512}, {2048, 8192}, {8192, 2048}, {2048, 128256}}

// The weight arena: 1.25 GiB of 16-bit values that are valid, moderate
// numbers both as F16 and as BF16 (and, read in pairs, as float32). Each
// decode benchmark carves as many weight buffers of its shape out of it as
// fit and rotates through them.
const arenaBytes = 5 << 28

var arena struct {
	once sync.Once
	u16  []uint16
}

func weightArena() []uint16 {
	arena.once.Do(func() {
		a := make([]uint16, arenaBytes/2)
		s := uint64(0x9e3779b97f4a7c15)
		for i := range a {
			s ^= s << 13
			s ^= s >> 7
			s ^= s << 17
			// sign | 0x3c00 | 10 random bits: F16 in ±[1, 2); as BF16 or
			// the high half of a float32 it is in ±[2⁻⁷, 2).
			a[i] = uint16(s>>48)&0x83ff | 0x3c00
		}
		arena.u16 = a
	})
	return arena.u16
}

func benchDecode(b *testing.B, typ wtype) {
	x := randX(rand.New(rand.NewPCG(1, 1)), 8192)
	for _, s := range decodeShapes {
		K, N := s[0], s[1]
		b.Run(fmt.Sprintf("K=%d,N=%d", K, N), func(b *testing.B) {
			bandwidthBuffers()
			a := weightArena()
			esz := 2
			if typ == tF32 {
				esz = 4
			}
			wbytes := K * N * esz
			nbuf := arenaBytes / wbytes
			if nbuf == 0 {
				b.Skip("shape larger than the arena")
			}
			dst := make([]float32, N)
			tm := newTeam(benchThreads)
			defer tm.close()
			var w []uint16
			job := func(part int) {
				lo, hi := split(N, tm.n, part)
				switch typ {
				case tF32:
					MatMulF32(dst, N, x[:K], 1, K, unsafe.Slice((*float32)(unsafe.Pointer(&w[0])), K*N), lo, hi)
				case tF16:
					MatMulF16(dst, N, x[:K], 1, K, w, lo, hi)
				default:
					MatMulBF16(dst, N, x[:K], 1, K, w, lo, hi)
				}
			}
			i := 0
			for b.Loop() {
				w = a[i*wbytes/2 : (i+1)*wbytes/2]
				tm.run(job)
				if i++; i == nbuf {
					i = 0
				}
			}
			gbs := float64(wbytes) * float64(b.N) / b.Elapsed().Seconds() / 1e9
			copyGBs, readGBs := refBandwidth(tm)
			b.ReportMetric(gbs, "GB/s")
			b.ReportMetric(copyGBs, "copyGB/s")
			b.ReportMetric(readGBs, "readGB/s")
			b.ReportMetric(100*gbs/copyGBs, "%copy")
			b.ReportMetric(100*gbs/readGBs, "%read")
		})
	}
}

func BenchmarkDecodeBF16(b *testing.B) { benchDecode(b, tBF16) }
func BenchmarkDecodeF16(b *testing.B)  { benchDecode(b, tF16) }
func BenchmarkDecodeF32(b *testing.B)  { benchDecode(b, tF32) }

// ---- prefill ----

var peak struct {
	once        sync.Once
	gflops, ghz float64
}

// fmaPeakGFLOPs measures the FMA peak of benchThreads cores (best of a few
// runs) and the clock of one core while all of them run the FMA loop.
func fmaPeakGFLOPs() (gflops, ghz float64) {
	peak.once.Do(func() {
		if !probesAvailable {
			return
		}
		const iters = 50_000_000
		tm := newTeam(benchThreads)
		defer tm.close()
		for range 3 {
			t0 := time.Now()
			tm.run(func(int) { fmaPeak(iters) })
			peak.gflops = max(peak.gflops, float64(benchThreads)*192*iters/time.Since(t0).Seconds()/1e9)
			var clk float64
			tm.run(func(part int) {
				if part == 0 {
					t0 := time.Now()
					clockLoop(iters)
					clk = 8 * iters / time.Since(t0).Seconds() / 1e9
				} else {
					fmaPeak(iters / 2)
				}
			})
			peak.ghz = max(peak.ghz, clk)
		}
	})
	return peak.gflops, peak.ghz
}

func BenchmarkPeak(b *testing.B) {
	if !probesAvailable {
		b.Skip("no probes on this architecture")
	}
	gflops, ghz := fmaPeakGFLOPs()
	for b.Loop() {
		fmaPeak(1000)
	}
	b.ReportMetric(gflops, "GFLOP/s")
	b.ReportMetric(ghz, "GHz")
	// theoretical AVX2 peak: cores × 2 FMA/cycle × 8 lanes × 2 flops × clock
	b.ReportMetric(float64(benchThreads)*32*ghz, "theoretical-GFLOP/s")
}

func benchPrefill(b *testing.B, typ wtype) {
	shapes := []struct{ M, K, N int }{
		{512, 2048, 2048}, {512, 2048, 8192}, {512, 8192, 2048},
		{64, 2048, 2048}, {128, 2048, 2048}, {256, 2048, 2048},
	}
	r := rand.New(rand.NewPCG(2, 2))
	for _, s := range shapes {
		M, K, N := s.M, s.K, s.N
		b.Run(fmt.Sprintf("M=%d,K=%d,N=%d", M, K, N), func(b *testing.B) {
			peakGF, _ := fmaPeakGFLOPs()
			x := randX(r, M*K)
			var w32 []float32
			var w16 []uint16
			a := weightArena()
			if typ == tF32 {
				w32 = unsafe.Slice((*float32)(unsafe.Pointer(&a[0])), K*N)
			} else {
				w16 = a[:K*N]
			}
			dst := make([]float32, M*N)
			tm := newTeam(benchThreads)
			defer tm.close()
			job := func(part int) {
				lo, hi := split(N, tm.n, part)
				switch typ {
				case tF32:
					MatMulF32(dst, N, x, M, K, w32, lo, hi)
				case tF16:
					MatMulF16(dst, N, x, M, K, w16, lo, hi)
				default:
					MatMulBF16(dst, N, x, M, K, w16, lo, hi)
				}
			}
			for b.Loop() {
				tm.run(job)
			}
			gf := 2 * float64(M) * float64(N) * float64(K) * float64(b.N) / b.Elapsed().Seconds() / 1e9
			b.ReportMetric(gf, "GFLOP/s")
			if peakGF > 0 {
				b.ReportMetric(100*gf/peakGF, "%peak")
			}
		})
	}
}

func BenchmarkPrefillF32(b *testing.B)  { benchPrefill(b, tF32) }
func BenchmarkPrefillF16(b *testing.B)  { benchPrefill(b, tF16) }
func BenchmarkPrefillBF16(b *testing.B) { benchPrefill(b, tBF16) }

// ---- attention vector kernels ----

func BenchmarkDot(b *testing.B) {
	r := rand.New(rand.NewPCG(3, 3))
	for _, n := range []int{64, 128, 256} {
		x, y := randX(r, n), randX(r, n)
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			b.SetBytes(int64(8 * n))
			var s float32
			for b.Loop() {
				s += Dot(x, y)
			}
			sink.Add(uint64(s))
		})
	}
}

func BenchmarkAxpy(b *testing.B) {
	r := rand.New(rand.NewPCG(4, 4))
	for _, n := range []int{64, 128, 256} {
		x, y := randX(r, n), randX(r, n)
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			b.SetBytes(int64(12 * n))
			for b.Loop() {
				Axpy(1e-9, x, y)
			}
		})
	}
}
