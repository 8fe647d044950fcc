package qkernels

import (
	"fmt"
	"math/rand"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/marlin-llm/marlin/backend/cpu/kernels"
	"github.com/marlin-llm/marlin/quant"
)

// TestBenchReport prints the benchmark table of the report (it runs only
// with QBENCH_REPORT=1; QBENCH_FORMATS and QBENCH_M select as for the
// benchmarks). Because the machine may be shared, every measurement is
// repeated in several rounds interleaved with the others (the 2-goroutine
// copy and the BF16 dense kernel of package kernels) and the best round
// counts.
// Each round runs one kernel over the whole ≥ 512 MB rotation of weight
// copies, 2 goroutines each computing half of [0, N) of every matmul, with
// a barrier after each matmul ("sync") — the realistic case — and also
// without it ("stream": each goroutine walks its halves of all matmuls).
// Experiment knobs: QBENCH_SHAPES=KxN,... picks shapes; QBENCH_NOPF=1 adds
// int4 rows without the software prefetch, QBENCH_PF=1 rows prefetching 2, 4
// or 8 sub-groups ahead, QBENCH_SUB128=1 rows with 128-row sub-groups.
//
//	QBENCH_REPORT=1 go test -run TestBenchReport -v -timeout 30m ./backend/cpu/qkernels
func TestBenchReport(t *testing.T) {
	if os.Getenv("QBENCH_REPORT") == "" {
		t.Skip("set QBENCH_REPORT=1")
	}
	rounds := 3
	shapes := benchShapes
	if s := os.Getenv("QBENCH_SHAPES"); s != "" {
		shapes = nil
		for _, p := range strings.Split(s, ",") {
			var k, n int
			fmt.Sscanf(p, "%dx%d", &k, &n)
			shapes = append(shapes, [2]int{k, n})
		}
	}
	copyBW := measureCopy(rounds)
	fmt.Printf("2-goroutine copy of 1 GiB: %.1f GB/s copied (%.1f GB/s read+write traffic)\n", copyBW, 2*copyBW)
	fmt.Println("Per format: best of rounds interleaved with the BF16 kernel and the copy; pct-of-copy = stream GB/s ÷ that row's copy GB/s (bytes copied/s).")
	rng := rand.New(rand.NewSource(1))
	fmts := benchFormats
	if os.Getenv("QBENCH_NOPF") != "" {
		fmts = append(fmts, benchFormat{"int4g32-nopf", gptqBench(4, 32, true)}, benchFormat{"int4pc-nopf", gptqBench(4, 0, true)})
	}
	if os.Getenv("QBENCH_PF") != "" {
		fmts = append(fmts, benchFormat{"int4g32-pf2", gptqBench(4, 32, true)}, benchFormat{"int4g32-pf4", gptqBench(4, 32, true)},
			benchFormat{"int4g32-pf8", gptqBench(4, 32, true)})
	}
	if os.Getenv("QBENCH_SUB128") != "" {
		fmts = append(fmts, benchFormat{"int4g128-sub128", gptqBench(4, 128, true)}, benchFormat{"int8g128-sub128", gptqBench(8, 128, true)})
	}
	Ms := []int{}
	for _, M := range []int{1, 16} {
		if selected("QBENCH_M", fmt.Sprint(M)) {
			Ms = append(Ms, M)
		}
	}
	type res struct {
		sync, stream time.Duration
	}
	// run measures one kernel over the whole rotation, with a barrier per
	// matmul and without.
	run := func(r *res, name string, ws []*quant.Weight, K, N, M int) {
		setNoPrefetch(strings.HasSuffix(name, "-nopf"))
		defer setNoPrefetch(false)
		for _, d := range []int{2, 4, 8} {
			if strings.HasSuffix(name, fmt.Sprintf("-pf%d", d)) {
				setPrefetchSubs(d)
				defer setPrefetchSubs(1)
			}
		}
		if strings.HasSuffix(name, "-sub128") {
			setSubRows(128)
			defer setSubRows(32)
		}
		x := randX(rand.New(rand.NewSource(2)), M*K)
		dst := make([]float32, M*N)
		mm := func(w *quant.Weight, g int) {
			h := N / 2
			if name == "bf16" {
				d := unsafe.Slice((*uint16)(unsafe.Pointer(&w.Data[0])), len(w.Data)/2)
				kernels.MatMulBF16(dst, N, x, M, K, d, g*h, (g+1)*h)
				return
			}
			MatMul(dst, N, x, M, w, g*h, (g+1)*h)
		}
		p := newPool2()
		t0 := time.Now()
		for _, w := range ws {
			p.run(func(g int) { mm(w, g) })
		}
		r.sync = min(r.sync, time.Since(t0)/time.Duration(len(ws)))
		p.close()
		var wg sync.WaitGroup
		t0 = time.Now()
		for g := 0; g < 2; g++ {
			wg.Add(1)
			go func(g int) {
				defer wg.Done()
				for _, w := range ws {
					mm(w, g)
				}
			}(g)
		}
		wg.Wait()
		r.stream = min(r.stream, time.Since(t0)/time.Duration(len(ws)))
	}
	for _, sh := range shapes {
		K, N := sh[0], sh[1]
		bfws := replicate(denseBench(rng, N, K))
		for _, M := range Ms {
			fmt.Printf("\nK=%d N=%d M=%d\n", K, N, M)
			fmt.Printf("%-12s %9s %7s %7s %9s %7s %6s %6s %9s\n", "format", "µs(sync)", "GB/s", "Gw/s", "µs(strm)", "GB/s", "%copy", "×bf16", "Gw·row/s")
			for _, f := range fmts {
				if !selected("QBENCH_FORMATS", f.name) {
					continue
				}
				ws := bfws
				if f.name != "bf16" {
					ws = replicate(f.make(rng, N, K))
				}
				r := &res{time.Hour, time.Hour}
				bf := &res{time.Hour, time.Hour}
				cp := 0.0
				for round := 0; round < rounds; round++ {
					run(r, f.name, ws, K, N, M)
					run(bf, "bf16", bfws, K, N, M)
					cp = max(cp, measureCopy(1))
				}
				bytes, weights := float64(weightBytes(ws[0])), float64(K*N)
				fmt.Printf("%-12s %9.1f %7.1f %7.1f %9.1f %7.1f %5.0f%% %6.2f %9.1f   (bf16 %.1f µs, copy %.1f GB/s)\n", f.name,
					float64(r.sync.Nanoseconds())/1e3, bytes/r.sync.Seconds()/1e9, weights/r.sync.Seconds()/1e9,
					float64(r.stream.Nanoseconds())/1e3, bytes/r.stream.Seconds()/1e9, 100*bytes/r.stream.Seconds()/1e9/cp,
					float64(bf.sync)/float64(r.sync), float64(M)*weights/r.sync.Seconds()/1e9,
					float64(bf.sync.Nanoseconds())/1e3, cp)
				ws = nil
				runtime.GC()
			}
		}
		bfws = nil
		runtime.GC()
	}
}

var copyBuf [2][]byte

func measureCopy(rounds int) float64 {
	const sz = 1 << 30
	if copyBuf[0] == nil {
		copyBuf[0], copyBuf[1] = make([]byte, sz), make([]byte, sz)
		for i := range copyBuf[0] {
			copyBuf[0][i] = byte(i)
		}
		copy(copyBuf[1], copyBuf[0])
	}
	best := time.Hour
	for r := 0; r < rounds; r++ {
		var wg sync.WaitGroup
		t0 := time.Now()
		for g := 0; g < 2; g++ {
			wg.Add(1)
			go func(g int) {
				defer wg.Done()
				copy(copyBuf[1][g*sz/2:(g+1)*sz/2], copyBuf[0][g*sz/2:(g+1)*sz/2])
			}(g)
		}
		wg.Wait()
		best = min(best, time.Since(t0))
	}
	return sz / best.Seconds() / 1e9
}
