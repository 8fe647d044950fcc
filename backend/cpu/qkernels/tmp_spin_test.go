package qkernels

import (
	"fmt"
	"math/rand"
	"os"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/marlin-llm/marlin/backend/cpu/kernels"
	"github.com/marlin-llm/marlin/quant"
)

type spin2 struct {
	seq  atomic.Uint64
	done atomic.Uint64
	job  func(int)
}

func newSpin2() *spin2 {
	s := &spin2{}
	go func() {
		var last uint64
		for {
			v := s.seq.Load()
			for v == last {
				v = s.seq.Load()
			}
			if v == ^uint64(0) {
				return
			}
			last = v
			s.job(1)
			s.done.Store(v)
		}
	}()
	return s
}

func (s *spin2) run(f func(int)) {
	s.job = f
	v := s.seq.Add(1)
	f(0)
	for s.done.Load() != v {
	}
}

func TestTmpSpin(t *testing.T) {
	if os.Getenv("TMPSPIN") == "" {
		t.Skip()
	}
	runtime.GOMAXPROCS(2)
	if v := os.Getenv("ZSWEEP"); v != "" {
		fmt.Sscan(v, &gptqZSweep)
	}
	if v := os.Getenv("ZAHEAD"); v != "" {
		fmt.Sscan(v, &gptqZAhead)
	}
	sp := newSpin2()
	rng := rand.New(rand.NewSource(1))
	for _, f := range benchFormats {
		if !selected("QBENCH_FORMATS", f.name) {
			continue
		}
		shapes := benchShapes
		if os.Getenv("TMPHEAD") != "" {
			shapes = [][2]int{{2048, 128256}, {2048, 2048}}
		}
		for _, sh := range shapes {
			K, N := sh[0], sh[1]
			ws := replicate(f.make(rng, N, K))
			for _, M := range []int{1} {
				x := randX(rng, M*K)
				dst := make([]float32, M*N)
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
				best := 1e9
				for r := 0; r < 5; r++ {
					t0 := time.Now()
					for i := range ws {
						w = ws[i]
						sp.run(work)
					}
					best = min(best, time.Since(t0).Seconds()/float64(len(ws)))
				}
				fmt.Printf("%s K%d N%d M%d: %.1f µs  %.1f GB/s\n", f.name, K, N, M, best*1e6, float64(weightBytes(ws[0]))/best/1e9)
			}
		}
	}
}
