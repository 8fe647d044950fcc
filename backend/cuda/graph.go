//go:build linux && !nocuda

package cuda

import (
	"errors"
	"os"
	"slices"
	"unsafe"
)

// CUDA graphs.
//
// A decode step of an 8B model is ~500 kernel launches; issuing each costs
// ~4 µs of host time (cuLaunchKernel through purego), 2 ms a token — more
// than the GPU needs to read the weights. So the backend records instead of
// issuing: every op between two synchronisation points (Read, Sync, Write,
// Close, an event) appends its launches and memsets to a segment, and its
// small host arrays (tokens, positions, block tables) to the segment's
// staging arena instead of copying them one by one. At the synchronisation
// point the segment is flushed:
//
//   - one host-to-device copy of the arena;
//   - if a captured graph has exactly the same op sequence (kernels, grids,
//     argument bytes — device pointers included — and memsets), one
//     cuGraphLaunch replays it;
//   - else, if a segment with the same sequence ran before (a decode step
//     that repeats), the ops are captured into a graph (stream capture),
//     which is kept and launched;
//   - else the ops are issued one by one (a prefill, say).
//
// Kernels take every value that changes from step to step (token ids,
// positions, sequence lengths, block tables) from the arena, never as
// launch arguments or grid sizes, so a decode step records the same
// sequence every time until a buffer is reallocated (a table outgrows its
// 256-byte slot, the rope table doubles): then the next repeat is captured
// anew. Graphs are on by default; MARLIN_CUDA_GRAPHS=0 or SetGraphs(false)
// issues every segment eagerly (the same kernels, for comparison).
//
// A segment that grows past graphFirst ops (MARLIN_CUDA_GRAPH_FIRST,
// default 16) is run in chunks while it is recorded (flushChunk), each
// chunk up to twice the one before (MARLIN_CUDA_GRAPH_GROW) and at most
// graphChunk ops (MARLIN_CUDA_GRAPH_CHUNK, default 128), so that the
// device works while the host records the rest of a long step.
//
// beginCapture/endCapture capture explicitly (tests): recording is off
// meanwhile.

// counterCap is the number of int32 counters the split-K kernels share.
const counterCap = 1 << 16

// GraphStats counts how flushed segments ran.
type GraphStats struct {
	Eager    int // issued op by op
	Captured int // captured into a new graph (and launched)
	Replayed int // replayed an existing graph
}

// segOp is one recorded launch (f != 0) or memset.
type segOp struct {
	f                    uintptr
	pdl                  bool
	cluster              int // blocks a thread-block cluster (launchCluster)
	gx, gy, gz, bx, smem int
	arg, nargs           int // args: s.offs[arg : arg+nargs] index s.words from word
	word                 int
	p                    uint64
	n                    int64
}

// segment is the work recorded since the last flush.
type segment struct {
	ops   []segOp
	words []uint64 // argument words of all launches
	offs  []uint8  // per argument: word offset within its launch
	sig   []uint64 // the sequence, word by word, for matching
	host  []byte   // staged host data, copied to dev at flush
	dev   *buffer
	off   int64
	// sent is where the arena's data not yet copied to dev begins: a
	// chunk flushed while recording (flushChunk) copies [sent, off) and
	// leaves the data in place for the ops that follow
	sent int64
	// chunks counts the chunks of the segment run so far
	chunks int
}

// clearOps forgets the recorded ops (they have run); the arena stays.
func (s *segment) clearOps() {
	s.ops, s.words, s.offs, s.sig = s.ops[:0], s.words[:0], s.offs[:0], s.sig[:0]
}

func (s *segment) reset() {
	s.clearOps()
	s.off, s.sent, s.chunks = 0, 0, 0
}

func (s *segment) addLaunch(f uintptr, gx, gy, gz, bx, smem int, a *launchArgs, pdl bool, cluster int) {
	s.ops = append(s.ops, segOp{f: f, pdl: pdl, cluster: cluster, gx: gx, gy: gy, gz: gz, bx: bx, smem: smem, arg: len(s.offs), nargs: a.np, word: len(s.words)})
	s.words = append(s.words, a.vals[:a.nv]...)
	s.offs = append(s.offs, a.offs[:a.np]...)
	s.sig = append(s.sig, uint64(f), uint64(gx)|uint64(gy)<<24|uint64(gz)<<48, uint64(bx)|uint64(smem)<<16|uint64(cluster)<<40|uint64(a.np)<<48)
	s.sig = append(s.sig, a.vals[:a.nv]...)
}

func (s *segment) addMemset(p uint64, n int64) {
	s.ops = append(s.ops, segOp{p: p, n: n})
	s.sig = append(s.sig, 0, p, uint64(n))
}

// segGraph is a captured segment.
type segGraph struct {
	sig     []uint64
	g, exec uintptr
}

// recording reports whether ops are recorded into the segment.
func (b *Backend) recording() bool {
	if !b.graphsOn || b.manualCapture {
		return false
	}
	if b.seg == nil {
		b.seg = &segment{}
	}
	return true
}

// stageSeg copies a small host array into the segment's arena.
func (b *Backend) stageSeg(data unsafe.Pointer, size int64) uint64 {
	s := b.seg
	need := (size + 255) &^ 255
	if s.dev == nil || s.off+need > s.dev.size {
		b.flush() // the recorded ops read the current arena
		n := int64(1 << 20)
		if s.dev != nil {
			n = 2 * s.dev.size
		}
		n = max(n, need)
		if s.dev != nil {
			b.drop(s.dev)
		}
		buf, err := b.allocRaw(n)
		if err != nil {
			s.dev = nil
			b.fail(err)
			return 0
		}
		s.dev, s.host = buf, make([]byte, n)
	}
	p := s.dev.ptr + uint64(s.off)
	copy(s.host[s.off:s.off+size], unsafe.Slice((*byte)(data), size))
	s.off += need
	return p
}

// hashWords is FNV-1a over 64-bit words.
func hashWords(v []uint64) uint64 {
	h := uint64(14695981039346656037)
	for _, w := range v {
		h ^= w
		h *= 1099511628211
	}
	return h
}

// flush runs the recorded segment (see the top of this file) and starts
// the next one with an empty arena.
func (b *Backend) flush() { b.runRecorded(false) }

// graphChunkOps is the default of Backend.graphChunk, graphFirstOps of
// Backend.graphFirst, graphGrowBy of Backend.graphGrow: the first chunk
// of a segment is short, so that the device starts a step after the host
// has recorded a few ops rather than 128 (the host records an 8B decode
// step in 0.12–0.6 ms, which the device otherwise waits for at every
// step: with 128, 8B INT4 decode measured 256–284 tok/s, with chunks of
// 64 295, H100), and each chunk after it is at most twice the one before
// (16, 32, 64, 128, 128, …): the host records a decode op in 1.5–2.5 µs
// and the device runs one in ~6 µs (GLM-4.7-Flash), so the device stays
// busy while the next chunk is recorded — a second chunk of 128 after the
// first 16 left it idle ~0.1–0.25 ms a step.
const (
	graphChunkOps = 128
	graphFirstOps = 16
	graphGrowBy   = 2
)

// chunkOps is the number of ops at which a segment's chunk c (0 the
// first) is run while recording goes on: graphFirst, then graphGrow times
// the chunk before, at most graphChunk (graphGrow 1: graphChunk for every
// chunk after the first, the schedule before the growth).
func (b *Backend) chunkOps(c int) int {
	n := b.graphFirst
	if c > 0 && b.graphGrow <= 1 {
		return b.graphChunk
	}
	for ; c > 0 && n < b.graphChunk; c-- {
		n *= b.graphGrow
	}
	return min(n, b.graphChunk)
}

// flushChunk runs the ops recorded so far while recording goes on (called
// when a segment reaches graphChunk ops): the device starts on the first
// chunk of a long segment while the host records the next, instead of
// waiting for the whole step to be recorded. A decode step of an MoE
// model is ~1500 launches and ~1.5 ms of host time; run as one graph
// after its recording, the device idled for all of it, and graphs were
// slower than eager issue. The chunks of a repeating step repeat, each
// captured and replayed on its own; their arena data stays in place
// (each chunk copies only what was staged since the previous one).
func (b *Backend) flushChunk() { b.runRecorded(true) }

// runRecorded runs the recorded ops (runSeg), then clears them; the arena
// too unless keepArena (a chunk of a segment that goes on).
func (b *Backend) runRecorded(keepArena bool) {
	s := b.seg
	if s == nil || b.flushing {
		return
	}
	b.flushing = true
	defer func() {
		if keepArena {
			s.clearOps()
			s.chunks++
		} else {
			s.reset()
		}
		b.flushing = false
	}()
	b.runSeg(s)
}

// runSeg copies the segment's new arena data and runs its ops: a replay
// of the graph with the same op sequence, a capture (when that sequence
// ran before), or op by op.
func (b *Backend) runSeg(s *segment) {
	if b.err != nil || len(s.ops) == 0 {
		return
	}
	if s.off > s.sent {
		if !b.checkCall(call(b.d.cuMemcpyHtoDAsync, uintptr(s.dev.ptr+uint64(s.sent)), uintptr(unsafe.Pointer(&s.host[s.sent])), uintptr(s.off-s.sent), b.stream), "cuMemcpyHtoDAsync") {
			return
		}
		s.sent = s.off
	}
	h := hashWords(s.sig)
	if g := b.graphs[h]; g != nil && slices.Equal(g.sig, s.sig) {
		b.checkCall(call(b.d.cuGraphLaunch, g.exec, b.stream), "cuGraphLaunch")
		b.gstats.Replayed++
		return
	}
	_, seen := b.seenSigs[h]
	if seen && len(s.ops) >= 4 && b.d.cuStreamBeginCapture != 0 && b.d.cuGraphInstantiate != 0 {
		if g := b.captureSeg(s); g != nil {
			if len(b.graphs) >= 1024 {
				b.dropGraphs()
			}
			b.graphs[h] = g
			b.checkCall(call(b.d.cuGraphLaunch, g.exec, b.stream), "cuGraphLaunch")
			b.gstats.Captured++
			return
		}
	}
	if b.seenSigs == nil || len(b.seenSigs) >= 1<<14 {
		b.seenSigs = map[uint64]struct{}{}
	}
	b.seenSigs[h] = struct{}{}
	b.issueSeg(s)
	b.gstats.Eager++
}

// issueSeg issues the segment's ops on the stream.
func (b *Backend) issueSeg(s *segment) {
	var params [len(launchArgs{}.ptrs)]unsafe.Pointer
	for i := range s.ops {
		op := &s.ops[i]
		if b.err != nil {
			return
		}
		if op.f == 0 {
			b.checkCall(call(b.d.cuMemsetD32Async, uintptr(op.p), 0, uintptr(op.n), b.stream), "cuMemsetD32Async")
			continue
		}
		for j := range op.nargs {
			params[j] = unsafe.Pointer(&s.words[op.word+int(s.offs[op.arg+j])])
		}
		b.issue(op.f, op.gx, op.gy, op.gz, op.bx, op.smem, unsafe.Pointer(&params[0]), op.pdl, op.cluster)
	}
}

// captureSeg records the segment's ops into a graph; nil (nothing
// issued, no error left) if the driver refuses.
func (b *Backend) captureSeg(s *segment) *segGraph {
	if call(b.d.cuStreamBeginCapture, b.stream, captureModeRelaxed) != cuSuccess {
		return nil
	}
	b.issueSeg(s)
	g := &segGraph{sig: slices.Clone(s.sig)}
	r := call(b.d.cuStreamEndCapture, b.stream, uintptr(unsafe.Pointer(&g.g)))
	if b.err != nil || r != cuSuccess {
		if r == cuSuccess {
			call(b.d.cuGraphDestroy, g.g)
		}
		b.err = nil // the launches failed inside the capture: retry them eagerly
		return nil
	}
	if call(b.d.cuGraphInstantiate, uintptr(unsafe.Pointer(&g.exec)), g.g, 0) != cuSuccess {
		call(b.d.cuGraphDestroy, g.g)
		return nil
	}
	return g
}

// dropGraphs destroys every captured segment graph (after the stream is
// idle).
func (b *Backend) dropGraphs() {
	if len(b.graphs) == 0 {
		return
	}
	call(b.d.cuStreamSynchronize, b.stream)
	for h, g := range b.graphs {
		call(b.d.cuGraphExecDestroy, g.exec)
		call(b.d.cuGraphDestroy, g.g)
		delete(b.graphs, h)
	}
}

// SetGraphs turns the recording of op segments into CUDA graphs on or off
// (it is on unless MARLIN_CUDA_GRAPHS=0); off, every op is issued as it
// comes. Work recorded so far is issued first.
func (b *Backend) SetGraphs(on bool) {
	b.enter()
	defer b.leave()
	b.flush()
	if !on && b.graphsOn && b.trace != nil {
		b.trace.dump(b, os.Stderr)
	}
	b.graphsOn = on
}

// GraphStats returns how the flushed segments ran since the backend
// started or the last ProfileReset.
func (b *Backend) GraphStats() GraphStats {
	b.enter()
	defer b.leave()
	return b.gstats
}

// graph is an instantiated captured graph.
type graph struct {
	b         *Backend
	g, exec   uintptr
	destroyed bool
}

var errNoGraphs = errors.New("cuda: this driver has no graph API (CUDA 11.4 or newer needed)")

// beginCapture starts recording the stream's work instead of running it
// (relaxed mode: the goroutine may change threads between ops). Until
// endCapture, Read and Sync must not be called.
func (b *Backend) beginCapture() error {
	if b.d.cuStreamBeginCapture == 0 || b.d.cuGraphInstantiate == 0 {
		return errNoGraphs
	}
	b.enter()
	defer b.leave()
	b.flush()
	b.manualCapture = true
	return b.d.check(call(b.d.cuStreamBeginCapture, b.stream, captureModeRelaxed), "cuStreamBeginCapture")
}

// endCapture ends the recording and instantiates the graph.
func (b *Backend) endCapture() (*graph, error) {
	b.enter()
	defer b.leave()
	b.manualCapture = false
	g := &graph{b: b}
	if err := b.d.check(call(b.d.cuStreamEndCapture, b.stream, uintptr(unsafe.Pointer(&g.g))), "cuStreamEndCapture"); err != nil {
		return nil, err
	}
	if err := b.d.check(call(b.d.cuGraphInstantiate, uintptr(unsafe.Pointer(&g.exec)), g.g, 0), "cuGraphInstantiateWithFlags"); err != nil {
		call(b.d.cuGraphDestroy, g.g)
		return nil, err
	}
	return g, nil
}

// launch queues one replay of the graph on the stream.
func (g *graph) launch() {
	b := g.b
	b.enter()
	defer b.leave()
	b.flush()
	if b.err == nil {
		b.checkCall(call(b.d.cuGraphLaunch, g.exec, b.stream), "cuGraphLaunch")
	}
}

// destroy frees the graph (after its queued replays).
func (g *graph) destroy() {
	if g.destroyed {
		return
	}
	g.destroyed = true
	b := g.b
	b.enter()
	defer b.leave()
	b.syncStream()
	call(b.d.cuGraphExecDestroy, g.exec)
	call(b.d.cuGraphDestroy, g.g)
}
