//go:build linux && !nocuda

package cuda

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/marlin-llm/marlin/backend"
	"github.com/marlin-llm/marlin/backend/cpu"
	"github.com/marlin-llm/marlin/dtype"
	"github.com/marlin-llm/marlin/quant"
)

// TestTensors: NewTensor is zeroed, Write/Read round-trip, View shares
// memory, Read checks the length.
func TestTensors(t *testing.T) {
	b := gpu(t)
	x := b.NewTensor(7, 13)
	got := make([]float32, 7*13)
	for i := range got {
		got[i] = 1
	}
	if err := b.Read(got, x); err != nil {
		t.Fatal(err)
	}
	for i, v := range got {
		if v != 0 {
			t.Fatalf("new tensor element %d = %g", i, v)
		}
	}
	vals := randn(rand.New(rand.NewPCG(1, 1)), 7*13, 1)
	b.Write(x, vals)
	v := b.View(x, 3)
	part := make([]float32, 3*13)
	if err := b.Read(part, v); err != nil {
		t.Fatal(err)
	}
	compare(t, "View", part, vals[:3*13], 0, 0)
	if v.Rows() != 3 || v.Cols() != 13 {
		t.Errorf("view [%d, %d]", v.Rows(), v.Cols())
	}
	if err := b.Read(make([]float32, 5), x); err == nil {
		t.Error("Read into a short slice succeeded")
	}
	empty := b.NewTensor(0, 5)
	b.Write(empty, nil)
	if err := b.Read(nil, empty); err != nil {
		t.Error(err)
	}
	mustSync(t, b)
}

// TestStickyErrors: an allocation the device cannot satisfy becomes the
// sticky error (no panic); ops on the failed tensor report an error rather
// than touching address 0; once reported, the backend works again.
func TestStickyErrors(t *testing.T) {
	b := newGPU(t)
	huge := b.NewTensor(1<<20, 1<<19) // 2 TiB
	err := b.Sync()
	if err == nil || !strings.Contains(err.Error(), "allocating") {
		t.Fatalf("2 TiB tensor: Sync = %v", err)
	}
	t.Logf("as expected: %v", err)
	if err := b.Sync(); err != nil {
		t.Fatalf("error not cleared: %v", err)
	}
	ok := b.NewTensor(2, 3)
	b.Add(ok, ok)
	mustSync(t, b)
	b.Add(huge, huge)
	if err := b.Sync(); err == nil {
		t.Fatal("op on a failed tensor: no error")
	}
	if _, err := b.NewKVCache(bigSpec()); err == nil {
		t.Error("huge KV cache: no error")
	}
	f8 := backend.KVSpec{Layers: 1, KVHeads: 1, KeyDim: 8, ValueDim: 8, BlockSize: 4, Blocks: 2, DType: dtype.F8E4M3}
	if _, err := b.NewKVCache(f8); err == nil || !strings.Contains(err.Error(), "not supported") {
		t.Errorf("KV cache of FP8 numbers: error %v, want one saying the type is not supported", err)
	}
	w := &quant.Weight{Name: "w", Format: quant.Dense, DType: dtype.F32, Out: 3, In: 2, Data: make([]byte, 24)}
	if _, err := b.LoadMatrix(w); err != nil {
		t.Fatalf("LoadMatrix after errors: %v", err)
	}
	b.Write(ok, []float32{1, 2, 3, 4, 5, 6})
	b.Add(ok, ok)
	got := make([]float32, 6)
	if err := b.Read(got, ok); err != nil || got[5] != 12 {
		t.Fatalf("after recovery: %v %v", got, err)
	}
}

// bigSpec is a KV cache of 512 GiB: within the shape checks, beyond any
// device's memory.
func bigSpec() backend.KVSpec {
	return backend.KVSpec{Layers: 1, KVHeads: 1, KeyDim: 1024, ValueDim: 1024, BlockSize: 1024, Blocks: 65536}
}

// TestClose: Close frees everything and is idempotent; Read afterwards is
// an error, not a crash.
func TestClose(t *testing.T) {
	gpu(t)
	b, err := New(0)
	if err != nil {
		t.Fatal(err)
	}
	x := b.NewTensor(100, 100)
	w := &quant.Weight{Name: "w", Format: quant.Dense, DType: dtype.F32, Out: 3, In: 2, Data: make([]byte, 24)}
	if _, err := b.LoadMatrix(w); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if len(b.allocs) != 0 {
		t.Errorf("%d allocations left after Close", len(b.allocs))
	}
	if err := b.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := b.Read(make([]float32, 100*100), x); err == nil {
		t.Error("Read after Close succeeded")
	}
}

// TestCollect: device memory of unreachable tensors is freed after the
// next synchronisation.
func TestCollect(t *testing.T) {
	b := newGPU(t)
	mustSync(t, b)
	before := len(b.allocs)
	for range 200 {
		b.NewTensor(64, 1024)
	}
	for range 3 {
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
	mustSync(t, b)
	if after := len(b.allocs); after > before+20 {
		t.Errorf("%d allocations before, %d after dropping 200 tensors", before, after)
	}
}

// TestGraph captures a few ops into a CUDA graph and replays it twice.
func TestGraph(t *testing.T) {
	b := newGPU(t)
	a, x := b.NewTensor(4, 300), b.NewTensor(4, 300)
	av, xv := randn(rand.New(rand.NewPCG(2, 2)), 1200, 1), randn(rand.New(rand.NewPCG(3, 3)), 1200, 1)
	b.Write(a, av)
	b.Write(x, xv)
	mustSync(t, b)
	if err := b.beginCapture(); err != nil {
		if err == errNoGraphs {
			t.Skip(err)
		}
		t.Fatal(err)
	}
	b.Add(a, x)
	b.Add(a, x)
	b.SiLUMul(x, x, x)
	gr, err := b.endCapture()
	if err != nil {
		t.Fatal(err)
	}
	defer gr.destroy()
	gr.launch()
	gr.launch()
	got := make([]float32, 1200)
	if err := b.Read(got, a); err != nil {
		t.Fatal(err)
	}
	// reference on the CPU: a += x twice, x = silu(x)·x, twice over
	c := cpu.New(1)
	ca, cx := c.NewTensor(4, 300), c.NewTensor(4, 300)
	c.Write(ca, av)
	c.Write(cx, xv)
	for range 2 {
		c.Add(ca, cx)
		c.Add(ca, cx)
		c.SiLUMul(cx, cx, cx)
	}
	want := make([]float32, 1200)
	c.Read(want, ca)
	compare(t, "graph replay", got, want, 1e-6, 1e-6)
}

// TestCallCost measures what the per-op context switch costs (the design
// choice of package cuda): a bare purego call, enter/leave (mutex,
// LockOSThread, cuCtxSetCurrent), a channel round trip to a dedicated
// locked worker goroutine, and the host-side cost of issuing one small op.
func TestCallCost(t *testing.T) {
	b := gpu(t)
	const n = 20000
	var ctx uintptr
	start := time.Now()
	for range n {
		call(b.d.cuCtxGetCurrent, uintptr(unsafe.Pointer(&ctx)))
	}
	bare := time.Since(start) / n

	start = time.Now()
	for range n {
		b.enter()
		b.leave()
	}
	enter := time.Since(start) / n

	work := make(chan func())
	done := make(chan struct{})
	go func() {
		runtime.LockOSThread()
		call(b.d.cuCtxSetCurrent, b.ctx)
		for f := range work {
			f()
			done <- struct{}{}
		}
	}()
	f := func() { call(b.d.cuCtxGetCurrent, uintptr(unsafe.Pointer(&ctx))) }
	start = time.Now()
	for range n {
		work <- f
		<-done
	}
	worker := time.Since(start) / n
	close(work)

	x := b.NewTensor(1, 256)
	mustSync(t, b)
	const ops = 2000
	start = time.Now()
	for range ops {
		b.Add(x, x)
	}
	issue := time.Since(start) / ops
	mustSync(t, b)
	perOp := time.Since(start) / ops
	t.Logf("purego call %v; enter+leave (lock, LockOSThread, cuCtxSetCurrent) %v; worker-goroutine round trip %v; issuing Add %v (%v per op including execution)",
		bare, enter, worker, issue, perOp)
}

// TestMatMulSpeed logs this first version's matmul times (device time,
// from CUDA events) on a Llama-3-8B projection shape (4096×4096), for the
// record (no assertion).
func TestMatMulSpeed(t *testing.T) {
	b := gpu(t)
	if testing.Short() {
		t.Skip("short")
	}
	rng := rand.New(rand.NewPCG(4, 4))
	const N, K = 4096, 4096
	for _, wc := range []struct {
		name string
		w    *quant.Weight
	}{
		{"bf16", denseWeight(dtype.BF16)(rng, N, K)},
		{"gptq-int4-g128", gptqWeight(4, 128, false, false, 1)(rng, N, K)},
		{"fp8", fp8Weight(rng, N, K)},
	} {
		m, err := b.LoadMatrix(wc.w)
		if err != nil {
			t.Fatal(err)
		}
		for _, M := range []int{1, 16, 256} {
			x, y := b.NewTensor(M, K), b.NewTensor(M, N)
			b.MatMul(y, x, m)
			mustSync(t, b)
			const reps = 20
			start, stop := b.newEvent(), b.newEvent()
			start.record()
			for range reps {
				b.MatMul(y, x, m)
			}
			stop.record()
			d := stop.since(start) / reps
			start.destroy()
			stop.destroy()
			mustSync(t, b)
			t.Logf("%-15s M=%-4d %8.1f µs  %6.0f GB/s of weights  %6.2f TFLOP/s", wc.name, M, float64(d.Nanoseconds())/1e3,
				float64(m.Bytes())/d.Seconds()/1e9, 2*float64(M)*N*K/d.Seconds()/1e12)
		}
	}
}

// TestHandoffSpeed measures what a kernel boundary costs a chain of
// launches as a decode step runs them (programmatic dependent launch, a
// CUDA graph: eager, captured, then replayed — the time printed): 64
// launches of handoff_probe, whose work is nothing, of 1, 132 and 528
// blocks, waiting as the decode kernels do (griddepcontrol.wait) and
// handing off by a flag instead (handoff_probe's mode 1). It checks that
// every launch did its work once, and prints µs a launch.
func TestHandoffSpeed(t *testing.T) {
	b := gpu(t)
	if testing.Short() {
		t.Skip("short")
	}
	b.enter()
	f := b.function("handoff_probe")
	b.leave()
	if f == 0 {
		t.Fatal("handoff_probe: not in the modules")
	}
	const chain = 64
	x := b.NewTensor(1, 1024)
	sync := b.NewTensor(1, 2*chain) // flags [chain], then counts [chain] (int32)
	for _, blocks := range []int{1, 132, 528} {
		for mode, name := range []string{"pdl_wait", "flag"} {
			b.Write(x, make([]float32, 1024))
			start, stop := b.newEvent(), b.newEvent()
			var us float64
			for range 3 { // eager, captured, replayed
				start.record()
				b.enter()
				sp := b.tensor(sync).ptr()
				b.memsetZero(sp, 2*chain)
				for i := range chain {
					a := b.newArgs()
					a.ptr(b.tensor(x).ptr())
					a.ptr(sp)
					a.ptr(sp + 4*chain)
					a.i32(i)
					a.i32(mode)
					b.launchOpt(f, blocks, 1, 1, 128, 0, a, true)
				}
				b.leave()
				stop.record()
				us = float64(stop.since(start).Nanoseconds()) / 1e3 / chain
			}
			mustSync(t, b)
			start.destroy()
			stop.destroy()
			got := make([]float32, 1024)
			b.Read(got, x)
			for i, v := range got {
				if want := float32(0); i < blocks {
					want = 3 * chain
					if v != want {
						t.Fatalf("%d blocks, %s: block %d counted %v launches, want %v", blocks, name, i, v, want)
					}
				} else if v != want {
					t.Fatalf("%d blocks, %s: x[%d] = %v, want 0", blocks, name, i, v)
				}
			}
			fmt.Printf("handoff: %d blocks, %s: %.2f µs a launch\n", blocks, name, us)
		}
	}
}
