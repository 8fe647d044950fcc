//go:build linux && !nocuda

package cuda

import (
	"fmt"
	"math"
	"unsafe"

	"github.com/marlin-llm/marlin/backend"
	"github.com/marlin-llm/marlin/backend/sampling"
)

// sampleParams is sampling.Params as sample.cu's SampleParams lays it out.
type sampleParams struct {
	temperature float32
	topK        int32
	topP, minP  float32
	u           float64
}

// Sample implements backend.Backend: sample_rows (sample.cu) draws every
// row's token on the device, one block a row, and only the ids are copied
// back. Like Read it runs the recorded ops first and waits for the stream.
func (b *Backend) Sample(dst []int32, logits backend.Tensor, p []sampling.Params) error {
	c := b.tensor(logits)
	if len(dst) != c.rows || len(p) != c.rows {
		return fmt.Errorf("cuda: Sample of a [%d, %d] tensor into %d ids with %d parameter sets", c.rows, c.cols, len(dst), len(p))
	}
	sp := make([]sampleParams, len(p))
	for i, q := range p {
		if q.U < 0 || q.U >= 1 || math.IsNaN(q.U) {
			return fmt.Errorf("cuda: Sample: row %d: uniform number %g outside [0, 1)", i, q.U)
		}
		sp[i] = sampleParams{temperature: q.Temperature, topK: int32(min(q.TopK, math.MaxInt32)), topP: q.TopP, minP: q.MinP, u: q.U}
	}
	if b.closed.Load() {
		return fmt.Errorf("cuda: Sample after Close")
	}
	b.enter()
	defer b.leave()
	var out uint64
	if len(dst) > 0 && b.usable(c) {
		// queued (or recorded) after the ops that made the logits, so a
		// decode step's graph ends with its draw
		pp := b.stage(unsafe.Pointer(&sp[0]), int64(len(sp))*int64(unsafe.Sizeof(sp[0])))
		out = b.scratchBuf("sample.ids", 4*int64(len(dst)))
		if pp != 0 && out != 0 {
			a := b.newArgs()
			a.ptr(out)
			a.ptr(c.ptr())
			a.ptr(pp)
			a.i32(c.cols)
			b.launch(b.k.sample, c.rows, 1, sampleThreads, 0, a)
		}
	}
	b.flush() // the recorded ops, the draw included, run before the copy
	if out != 0 && b.err == nil {
		b.checkCall(call(b.d.cuMemcpyDtoHAsync, uintptr(unsafe.Pointer(&dst[0])), uintptr(out), uintptr(4*len(dst)), b.stream), "cuMemcpyDtoHAsync")
	}
	b.syncStream()
	return b.takeErr()
}

// sampleThreads is SAMPLE_THREADS of sample.cu.
const sampleThreads = 1024
