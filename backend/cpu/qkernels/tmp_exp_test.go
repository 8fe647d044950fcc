package qkernels

import (
	"fmt"
	"math/rand"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/marlin-llm/marlin/backend/cpu/kernels"
	"github.com/marlin-llm/marlin/quant"
)

type expCfg struct {
	name  string
	apply func()
}

var expConfigs = map[string]expCfg{
	"base":   {"base", func() {}},
	"sub2":   {"sub2", func() { gptqPrefetchSubs = 2 }},
	"sub4":   {"sub4", func() { gptqPrefetchSubs = 4 }},
	"row1k":  {"row1k", func() { gptqZSweep = 0; gptqZAhead = 1024 }},
	"row2k":  {"row2k", func() { gptqZSweep = 0; gptqZAhead = 2048 }},
	"nopf":   {"nopf", func() { gptqNoPrefetch = true }},
	"avx2":   {"avx2", func() { useAVX512 = false }},
	"sub8":   {"sub8", func() { gptqPrefetchSubs = 8 }},
	"sub16":  {"sub16", func() { gptqPrefetchSubs = 16 }},
	"sw16k":  {"sw16k", func() { gptqZSweep = 16 << 10 }},
	"sw256k": {"sw256k", func() { gptqZSweep = 256 << 10 }},
}

func resetExp() {
	gptqPrefetchSubs = 1
	gptqZSweep = 64 << 10
	gptqZAhead = 2048
	gptqNoPrefetch = false
	useAVX512 = hasAVX512
}

func TestTmpExp(t *testing.T) {
	cfgs := os.Getenv("TMPEXP")
	if cfgs == "" {
		t.Skip()
	}
	runtime.GOMAXPROCS(2)
	sp := newSpin2()
	rng := rand.New(rand.NewSource(1))
	shapes := [][2]int{{2048, 2048}, {2048, 512}, {2048, 8192}, {8192, 2048}, {2048, 128256}}
	if s := os.Getenv("QBENCH_SHAPES"); s != "" {
		shapes = nil
		for _, p := range strings.Split(s, ",") {
			var k, n int
			fmt.Sscanf(p, "%dx%d", &k, &n)
			shapes = append(shapes, [2]int{k, n})
		}
	}
	M := 1
	if v := os.Getenv("TMPM"); v != "" {
		fmt.Sscan(v, &M)
	}
	type key struct {
		f, c string
		s    int
	}
	best := map[key]float64{}
	bytes := map[key]int{}
	copyBest := 0.0
	src, dstb := make([]byte, 1<<30), make([]byte, 1<<30)
	for i := range src {
		src[i] = byte(i)
	}
	copy(dstb, src)
	var fmts []benchFormat
	for _, f := range benchFormats {
		if selected("QBENCH_FORMATS", f.name) {
			fmts = append(fmts, f)
		}
	}
	for si, sh := range shapes {
		K, N := sh[0], sh[1]
		for _, f := range fmts {
			ws := replicate(f.make(rng, N, K))
			x := randX(rng, M*K)
			dst := make([]float32, M*N)
			var w *quant.Weight
			work := func(g int) {
				h := (N / 2) &^ 63
				lo, hi := 0, h
				if g == 1 {
					lo, hi = h, N
				}
				if f.name == "bf16" {
					d := unsafe.Slice((*uint16)(unsafe.Pointer(&w.Data[0])), len(w.Data)/2)
					kernels.MatMulBF16(dst, N, x, M, K, d, lo, hi)
					return
				}
				MatMul(dst, N, x, M, w, lo, hi)
			}
			for r := 0; r < 4; r++ {
				t0 := time.Now()
				sp.run(func(g int) {
					copy(dstb[g<<29:(g+1)<<29], src[g<<29:(g+1)<<29])
				})
				copyBest = max(copyBest, 2*float64(1<<30)/time.Since(t0).Seconds()/1e9)
				for _, cn := range strings.Split(cfgs, ",") {
					resetExp()
					expConfigs[cn].apply()
					t0 := time.Now()
					for i := range ws {
						w = ws[i]
						sp.run(work)
					}
					el := time.Since(t0).Seconds() / float64(len(ws))
					k := key{f.name, cn, si}
					if b, ok := best[k]; !ok || el < b {
						best[k] = el
					}
					bytes[k] = weightBytes(ws[0])
				}
			}
			resetExp()
			ws = nil
			runtime.GC()
		}
	}
	fmt.Printf("best copy traffic %.1f GB/s, M=%d\n", copyBest, M)
	for si, sh := range shapes {
		for _, f := range fmts {
			line := fmt.Sprintf("%-10s K%-5d N%-6d", f.name, sh[0], sh[1])
			for _, cn := range strings.Split(cfgs, ",") {
				k := key{f.name, cn, si}
				line += fmt.Sprintf(" %s %7.1fµs %5.1fGB/s |", cn, best[k]*1e6, float64(bytes[k])/best[k]/1e9)
			}
			fmt.Println(line)
		}
	}
}
