// Package cpu is the CPU backend: activations in float32 Go slices, weights
// multiplied straight from their stored format (F32/F16/BF16 or quantized)
// by the SIMD kernels of backend/cpu/kernels and backend/cpu/qkernels, work
// split across all cores.
package cpu

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/marlin-llm/marlin/backend"
	"github.com/marlin-llm/marlin/backend/sampling"
)

// Backend runs the ops on the CPU. It is safe for use by one forward pass at
// a time; ops parallelise internally.
type Backend struct {
	workers int
	pool    *pool // workers−1 helper goroutines for parallel

	mu    sync.Mutex
	ropes map[*backend.Rope]*ropeTab // cos/sin tables, by the model's Rope

	// mapped counts the bytes of the loaded weights that the kernels read
	// from a file mapping (MemoryAvailable subtracts them).
	mapped atomic.Int64
}

// New returns a CPU backend using threads goroutines for the heavy ops
// (0 means one per available core, GOMAXPROCS).
func New(threads int) *Backend {
	if threads <= 0 {
		threads = runtime.GOMAXPROCS(0)
	}
	b := &Backend{workers: threads}
	if threads > 1 {
		b.pool = newPool(threads - 1)
		// the helpers reference only the pool: they end when the backend
		// is closed or unreachable
		runtime.AddCleanup(b, func(p *pool) { p.close() }, b.pool)
	}
	return b
}

// Name implements backend.Backend.
func (b *Backend) Name() string { return "cpu" }

// Threads returns the number of goroutines the heavy ops use.
func (b *Backend) Threads() int { return b.workers }

// Sync implements backend.Backend; CPU ops complete before they return.
func (b *Backend) Sync() error { return nil }

// Close implements backend.Backend.
func (b *Backend) Close() error {
	if b.pool != nil {
		b.pool.close()
	}
	return nil
}

// Tensor is a row-major float32 matrix.
type Tensor struct {
	rows, cols int
	data       []float32
}

// Rows implements backend.Tensor.
func (t *Tensor) Rows() int { return t.rows }

// Cols implements backend.Tensor.
func (t *Tensor) Cols() int { return t.cols }

// Data returns the tensor's values, row-major. The slice aliases the tensor.
func (t *Tensor) Data() []float32 { return t.data }

// Row returns row i, aliasing the tensor.
func (t *Tensor) Row(i int) []float32 { return t.data[i*t.cols : (i+1)*t.cols] }

// SliceRows returns rows [from, to) of t, sharing its memory.
func (t *Tensor) SliceRows(from, to int) *Tensor {
	if from < 0 || to < from || to > t.rows {
		panic(fmt.Sprintf("cpu: rows [%d, %d) of a [%d, %d] tensor", from, to, t.rows, t.cols))
	}
	return &Tensor{rows: to - from, cols: t.cols, data: t.data[from*t.cols : to*t.cols]}
}

// NewTensor implements backend.Backend.
func (b *Backend) NewTensor(rows, cols int) backend.Tensor {
	if rows < 0 || cols < 0 {
		panic(fmt.Sprintf("cpu: NewTensor(%d, %d): negative size", rows, cols))
	}
	return &Tensor{rows: rows, cols: cols, data: make([]float32, rows*cols)}
}

// View implements backend.Backend.
func (b *Backend) View(t backend.Tensor, rows int) backend.Tensor {
	c := tensor(t)
	if rows < 0 || rows > c.rows {
		panic(fmt.Sprintf("cpu: View of %d rows of a [%d, %d] tensor", rows, c.rows, c.cols))
	}
	return &Tensor{rows: rows, cols: c.cols, data: c.data[:rows*c.cols]}
}

// Write implements backend.Backend.
func (b *Backend) Write(t backend.Tensor, src []float32) {
	c := tensor(t)
	if len(src) != len(c.data) {
		panic(fmt.Sprintf("cpu: Write of %d values into a [%d, %d] tensor", len(src), c.rows, c.cols))
	}
	copy(c.data, src)
}

// Read implements backend.Backend.
func (b *Backend) Read(dst []float32, t backend.Tensor) error {
	c := tensor(t)
	if len(dst) != len(c.data) {
		return fmt.Errorf("cpu: Read of a [%d, %d] tensor into %d values", c.rows, c.cols, len(dst))
	}
	copy(dst, c.data)
	return nil
}

func tensor(t backend.Tensor) *Tensor {
	c, ok := t.(*Tensor)
	if !ok {
		panic(fmt.Sprintf("cpu: tensor of another backend (%T)", t))
	}
	return c
}

// vector is a parameter vector.
type vector []float32

func (v vector) Len() int { return len(v) }

// LoadVector implements backend.Backend.
func (b *Backend) LoadVector(v []float32) backend.Vector {
	return vector(append([]float32(nil), v...))
}

func vec(v backend.Vector) vector {
	c, ok := v.(vector)
	if !ok {
		panic(fmt.Sprintf("cpu: vector of another backend (%T)", v))
	}
	return c
}

// chunksPerWorker is how many pieces parallel cuts the work into per
// worker. More than one, so that a worker the scheduler delays (the server's
// goroutines share the cores) leaves its pieces to the others instead of
// holding up the whole op; few, so that each piece is still a long
// contiguous stream for the prefetchers.
const chunksPerWorker = 2

// parallel runs fn over [0, n) cut into contiguous chunks, each a multiple
// of align (except the last), that the workers (the calling goroutine is
// one of them, the pool's helpers the others) take in order, and waits for
// all of them.
func (b *Backend) parallel(n, align int, fn func(lo, hi int)) {
	w := b.workers
	if align < 1 {
		align = 1
	}
	units := (n + align - 1) / align
	if units < w {
		w = units
	}
	if w <= 1 {
		if n > 0 {
			fn(0, n)
		}
		return
	}
	per := (units + w*chunksPerWorker - 1) / (w * chunksPerWorker) * align
	j := &job{fn: fn, n: n, per: per, chunks: int64((n + per - 1) / per)}
	if b.pool != nil && b.pool.do(j) {
		return
	}
	var wg sync.WaitGroup
	for range w - 1 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			j.run()
		}()
	}
	j.run()
	wg.Wait()
}

func checkShape(op string, cond bool, format string, args ...any) {
	if !cond {
		panic("cpu: " + op + ": " + fmt.Sprintf(format, args...))
	}
}

// Sample implements backend.Backend: sampling's draw on each row, the rows
// in parallel.
func (b *Backend) Sample(dst []int32, logits backend.Tensor, p []sampling.Params) error {
	c := tensor(logits)
	if len(dst) != c.rows || len(p) != c.rows {
		return fmt.Errorf("cpu: Sample of a [%d, %d] tensor into %d ids with %d parameter sets", c.rows, c.cols, len(dst), len(p))
	}
	b.parallel(c.rows, 1, func(lo, hi int) {
		s := scratches.Get().(*sampling.Scratch)
		defer scratches.Put(s)
		for i := lo; i < hi; i++ {
			dst[i] = s.Draw(c.Row(i), p[i])
		}
	})
	return nil
}

// scratches holds sampling's working memory between Sample calls.
var scratches = sync.Pool{New: func() any { return new(sampling.Scratch) }}
