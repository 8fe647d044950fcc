//go:build linux && !nocuda

package cuda

import (
	"cmp"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"unsafe"
)

// tracer records when each kernel launch of a decode step waits and is
// released (MARLIN_CUDA_TRACE=1; a measuring tool for the GPU machine, as
// the profiler is). The kernels are compiled with -DMARLIN_TRACE: thread
// 0 of every block that calls pdl_wait (common.cu) stores its launch's
// id, the global timer before and after the wait and the launch's shape.
// Unlike the profiler's events this keeps graphs and programmatic
// dependent launch on, so what it shows is the step as it runs: a launch
// is released when the one before it has completed, so the time from one
// launch's release to the next one's is what that launch costs the step,
// and the time its first block waited says whether its blocks were
// resident before the previous kernel ended. The host keeps the names and
// shapes of its launches in issue order to name the device's records.
// The table (dump) is written to stderr when graphs are turned off
// (SetGraphs(false): `marlin bench` does that after its decode with
// graphs) and at Close. Only sm_90 and newer record (pdl_wait is empty
// below); with MARLIN_CUDA_PDL=0 a launch's blocks start after the one
// before it ends, so "waited" is ~0 and the costs are start to start.
type tracer struct {
	buf      *buffer
	launches []traceLaunch // the host's launches, the newest last (at most traceKeep)
}

type traceLaunch struct {
	name           string
	gx, gy, gz, bx int
}

// traceSlots, traceBlocks and traceWords are common.cu's TRACE_SLOTS,
// TRACE_BLOCKS and TRACE_WORDS; traceMarks the phases trace_mark records.
const (
	traceSlots  = 1024
	traceBlocks = 1024
	traceWords  = 8
	traceMarks  = 4
	traceKeep   = 4 * traceSlots
)

var traceOn = os.Getenv("MARLIN_CUDA_TRACE") == "1"

func init() {
	if traceOn {
		compileOptions = append(compileOptions, "-DMARLIN_TRACE")
	}
}

// startTrace allocates the records and points every module's marlin_trace
// at them (the modules are loaded, the context current).
func (b *Backend) startTrace() error {
	if b.d.cuModuleGetGlobal == 0 {
		return fmt.Errorf("cuda: trace: the driver lacks cuModuleGetGlobal_v2")
	}
	buf, err := b.allocRaw(int64(traceSlots * traceBlocks * traceWords * 8))
	if err != nil {
		return fmt.Errorf("cuda: trace: %w", err)
	}
	b.memsetZero(buf.ptr, buf.size/4)
	name := cstr("marlin_trace")
	for _, m := range b.modules {
		var dptr uint64
		var size uintptr
		if r := call(b.d.cuModuleGetGlobal, uintptr(unsafe.Pointer(&dptr)), uintptr(unsafe.Pointer(&size)), m, uintptr(unsafe.Pointer(&name[0]))); r != cuSuccess || size != 8 {
			return fmt.Errorf("cuda: trace: no marlin_trace in a module (%d, %d bytes)", r, size)
		}
		p := buf.ptr
		if err := b.d.check(call(b.d.cuMemcpyHtoD, uintptr(dptr), uintptr(unsafe.Pointer(&p)), 8), "cuMemcpyHtoD"); err != nil {
			return err
		}
	}
	runtime.KeepAlive(name)
	b.trace = &tracer{buf: buf}
	return nil
}

// note keeps the host's launch of f (launchCluster, in issue order).
func (t *tracer) note(name string, gx, gy, gz, bx int) {
	if len(t.launches) >= traceKeep {
		t.launches = slices.Delete(t.launches, 0, traceKeep/2)
	}
	t.launches = append(t.launches, traceLaunch{name, gx, gy, gz, bx})
}

// traceRec is one launch as the device recorded it.
type traceRec struct {
	id                  uint64
	gx, gy, gz, bx      int
	blocks              int
	wait0, rel0, relMax uint64 // first wait, first and last release (ns)
	name                string
	marks               [traceMarks]traceMark
}

// traceMark is when a launch's blocks reached one phase (trace_mark):
// of the blocks that did (n), the median and the last, in ns after the
// launch's first release.
type traceMark struct {
	n         int
	med, last int64
}

// traceRecords turns the device's table (common.cu's marlin_trace:
// [traceSlots][traceBlocks][id, wait, release, shape, mark 1…4]) into one
// record a launch, oldest first, named after the host's launches (oldest
// first) of the same shape from the newest back — host launches that
// recorded nothing (kernels without pdl_wait) are skipped —, and keeps the
// launches since the last gap of over a millisecond between two releases
// (a host synchronisation): the decode steps that ran back to back.
func traceRecords(raw []uint64, launches []traceLaunch) []traceRec {
	var recs []traceRec
	const W = traceWords
	for s := range traceSlots {
		slot := raw[s*traceBlocks*W : (s+1)*traceBlocks*W]
		var id uint64
		for blk := range traceBlocks {
			id = max(id, slot[W*blk])
		}
		if id == 0 {
			continue
		}
		r := traceRec{id: id, wait0: ^uint64(0), rel0: ^uint64(0)}
		var at [traceMarks][]uint64 // the blocks' marks, when set
		for blk := range traceBlocks {
			e := slot[W*blk : W*blk+W]
			if e[0] != id { // an older launch's block, or none
				continue
			}
			r.blocks++
			r.wait0, r.rel0, r.relMax = min(r.wait0, e[1]), min(r.rel0, e[2]), max(r.relMax, e[2])
			r.gx, r.gy, r.gz, r.bx = int(e[3]&0xffff), int(e[3]>>16&0xffff), int(e[3]>>32&0xffff), int(e[3]>>48)
			for k := range traceMarks {
				if e[4+k] != 0 {
					at[k] = append(at[k], e[4+k])
				}
			}
		}
		for k, a := range at {
			if len(a) > 0 {
				slices.Sort(a)
				r.marks[k] = traceMark{n: len(a), med: int64(a[len(a)/2]) - int64(r.rel0), last: int64(a[len(a)-1]) - int64(r.rel0)}
			}
		}
		recs = append(recs, r)
	}
	slices.SortFunc(recs, func(a, c traceRec) int { return cmp.Compare(a.id, c.id) })
	h := len(launches) - 1
	for i := len(recs) - 1; i >= 0 && h >= 0; i-- {
		r := &recs[i]
		for h >= 0 {
			l := launches[h]
			h--
			if l.gx == r.gx && l.gy == r.gy && l.gz == r.gz && l.bx == r.bx {
				r.name = l.name
				break
			}
		}
	}
	for i := len(recs) - 1; i > 0; i-- {
		if recs[i].rel0 > recs[i-1].rel0+1_000_000 {
			return recs[i:]
		}
	}
	return recs
}

// dump synchronises, reads the records back and writes the table of the
// last launches (at most traceSlots, and none from before the last pause
// of over a millisecond), oldest first, and each kernel's share of them,
// to w.
func (t *tracer) dump(b *Backend, w io.Writer) {
	b.flush()
	if b.err != nil || !b.checkCall(call(b.d.cuStreamSynchronize, b.stream), "cuStreamSynchronize") {
		return
	}
	raw := make([]uint64, traceSlots*traceBlocks*traceWords)
	if !b.checkCall(call(b.d.cuMemcpyDtoH, uintptr(unsafe.Pointer(&raw[0])), uintptr(t.buf.ptr), uintptr(8*len(raw))), "cuMemcpyDtoH") {
		return
	}
	writeTrace(w, traceRecords(raw, t.launches))
}

// writeTrace writes the table of the records (traceRecords) and each
// kernel's share of the time they span.
func writeTrace(w io.Writer, recs []traceRec) {
	if len(recs) < 2 {
		fmt.Fprintln(w, "trace: no launches recorded")
		return
	}
	t0 := recs[0].rel0
	fmt.Fprintf(w, "trace: %d launches (ns from the first release; cost = the next launch's first release − this one's)\n", len(recs))
	fmt.Fprintf(w, "%-5s %-34s %-18s %6s %10s %8s %8s %8s  %s\n", "#", "kernel", "grid", "blocks", "released", "waited", "stagger", "cost", "phases k: median/last block")
	type share struct {
		calls int
		ns    uint64
	}
	shares := map[string]*share{}
	for i, r := range recs {
		cost := uint64(0)
		if i+1 < len(recs) && recs[i+1].rel0 > r.rel0 {
			cost = recs[i+1].rel0 - r.rel0
		}
		waited := int64(r.rel0) - int64(r.wait0)
		fmt.Fprintf(w, "%-5d %-34s %-18s %6d %10d %8d %8d %8d", i, cmp.Or(r.name, "?"), fmt.Sprintf("%dx%dx%d/%d", r.gx, r.gy, r.gz, r.bx), r.blocks, r.rel0-t0, waited, r.relMax-r.rel0, cost)
		for k, m := range r.marks { // phases: median block / last block, ns
			if m.n > 0 {
				fmt.Fprintf(w, "  %d: %d/%d", k+1, m.med, m.last)
			}
		}
		fmt.Fprintln(w)
		if i+1 < len(recs) {
			s := shares[r.name]
			if s == nil {
				s = &share{}
				shares[r.name] = s
			}
			s.calls++
			s.ns += cost
		}
	}
	names := make([]string, 0, len(shares))
	for n := range shares {
		names = append(names, n)
	}
	slices.SortFunc(names, func(a, c string) int { return cmp.Compare(shares[c].ns, shares[a].ns) })
	total := recs[len(recs)-1].rel0 - t0
	fmt.Fprintf(w, "trace: each kernel's cost over %.1f µs\n", float64(total)/1e3)
	for _, n := range names {
		s := shares[n]
		fmt.Fprintf(w, "  %-34s %5d calls %10.1f µs %7.2f µs a call %5.1f%%\n", cmp.Or(n, "?"), s.calls, float64(s.ns)/1e3, float64(s.ns)/1e3/float64(s.calls), 100*float64(s.ns)/float64(total))
	}
	writeMarks(w, recs, names)
}

// writeMarks writes, for each kernel whose launches recorded phases
// (trace_mark), the mean over its launches of when the median block and
// the last block reached each phase, in µs after the launch's release.
func writeMarks(w io.Writer, recs []traceRec, names []string) {
	type sum struct {
		calls     int
		med, last float64
	}
	byName := map[string]*[traceMarks]sum{}
	for _, r := range recs {
		for k, m := range r.marks {
			if m.n == 0 {
				continue
			}
			s := byName[r.name]
			if s == nil {
				s = &[traceMarks]sum{}
				byName[r.name] = s
			}
			s[k].calls++
			s[k].med += float64(m.med) / 1e3
			s[k].last += float64(m.last) / 1e3
		}
	}
	if len(byName) == 0 {
		return
	}
	fmt.Fprintln(w, "trace: phases (trace_mark k: µs after the release, median block / last block, mean over launches)")
	for _, n := range names {
		s := byName[n]
		if s == nil {
			continue
		}
		fmt.Fprintf(w, "  %-34s", cmp.Or(n, "?"))
		for k, m := range s {
			if m.calls > 0 {
				fmt.Fprintf(w, "  %d: %6.2f / %6.2f", k+1, m.med/float64(m.calls), m.last/float64(m.calls))
			}
		}
		fmt.Fprintln(w)
	}
}
