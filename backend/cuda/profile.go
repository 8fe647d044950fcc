//go:build linux && !nocuda

package cuda

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"unsafe"
)

// profiler times every kernel launch with a pair of CUDA events
// (MARLIN_CUDA_PROFILE=1, which also turns graphs off): the device time
// from just before a kernel starts to just after it ends, summed per
// kernel name. A profiling tool for the GPU machine, where Nsight Systems
// does not run; the events add host time per launch, so end-to-end speeds
// measured with it on are not comparable.
type profiler struct {
	free  []uintptr // events ready for reuse
	recs  []profRec // launches waiting for the next stream sync
	stats map[string]*profStat
}

type profRec struct {
	name       string
	start, end uintptr
}

type profStat struct {
	calls int
	ms    float64
}

// skipKernels (MARLIN_CUDA_SKIP: kernel names, separated by commas) are
// never launched. The results are then wrong; what it is for is timing: a
// decode step's time with and without a kernel, graphs and programmatic
// dependent launch on, is what that kernel costs the step as it runs,
// which the profiler's serialised times overstate for kernels whose start
// overlaps the previous one's tail.
var skipKernels = func() map[string]bool {
	m := map[string]bool{}
	for _, n := range strings.Split(os.Getenv("MARLIN_CUDA_SKIP"), ",") {
		if n = strings.TrimSpace(n); n != "" {
			m[n] = true
		}
	}
	return m
}()

func newProfiler() *profiler { return &profiler{stats: map[string]*profStat{}} }

func (p *profiler) event(b *Backend) uintptr {
	if n := len(p.free); n > 0 {
		e := p.free[n-1]
		p.free = p.free[:n-1]
		return e
	}
	var e uintptr
	call(b.d.cuEventCreate, uintptr(unsafe.Pointer(&e)), eventDefault)
	return e
}

// around records an event before kernel f's launch and returns the
// function that records the one after it.
func (p *profiler) around(b *Backend, f uintptr) func() {
	start := p.event(b)
	call(b.d.cuEventRecord, start, b.stream)
	return func() {
		end := p.event(b)
		call(b.d.cuEventRecord, end, b.stream)
		p.recs = append(p.recs, profRec{b.names[f], start, end})
	}
}

// collect adds the finished launches' times (after a stream sync).
func (p *profiler) collect(b *Backend) {
	for _, r := range p.recs {
		var ms float32
		if call(b.d.cuEventElapsedTime, uintptr(unsafe.Pointer(&ms)), r.start, r.end) == cuSuccess {
			s := p.stats[r.name]
			if s == nil {
				s = &profStat{}
				p.stats[r.name] = s
			}
			s.calls++
			s.ms += float64(ms)
		}
		p.free = append(p.free, r.start, r.end)
	}
	p.recs = p.recs[:0]
}

// ProfileReset clears the kernel times gathered so far (profiling on).
func (b *Backend) ProfileReset() {
	b.enter()
	defer b.leave()
	b.gstats = GraphStats{}
	if b.prof != nil {
		b.syncStream()
		clear(b.prof.stats)
	}
}

// ProfileReport returns the kernel times gathered since the last reset,
// per step (divided by steps), largest first; when profiling is off, how
// the segments since the reset ran (eager, captured, replayed).
func (b *Backend) ProfileReport(steps int) string {
	b.enter()
	defer b.leave()
	if b.prof == nil {
		g := b.gstats
		return fmt.Sprintf("segments: %d eager, %d captured, %d replayed (%d steps)\n", g.Eager, g.Captured, g.Replayed, steps)
	}
	b.syncStream()
	steps = max(steps, 1)
	type row struct {
		name string
		s    *profStat
	}
	var rows []row
	var total float64
	var calls int
	for n, s := range b.prof.stats {
		rows = append(rows, row{n, s})
		total += s.ms
		calls += s.calls
	}
	slices.SortFunc(rows, func(a, b row) int {
		switch {
		case a.s.ms > b.s.ms:
			return -1
		case a.s.ms < b.s.ms:
			return 1
		}
		return strings.Compare(a.name, b.name)
	})
	var sb strings.Builder
	fmt.Fprintf(&sb, "kernel times per step (%d steps; %d launches, %.1f µs of kernels a step)\n", steps, calls/steps, 1000*total/float64(steps))
	fmt.Fprintf(&sb, "%-28s %8s %10s %8s %6s\n", "kernel", "calls", "µs/step", "µs/call", "share")
	for _, r := range rows {
		fmt.Fprintf(&sb, "%-28s %8.1f %10.1f %8.2f %5.1f%%\n", r.name, float64(r.s.calls)/float64(steps),
			1000*r.s.ms/float64(steps), 1000*r.s.ms/float64(r.s.calls), 100*r.s.ms/total)
	}
	return sb.String()
}
