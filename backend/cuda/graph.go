//go:build !nocuda

package cuda

import (
	"errors"
	"unsafe"
)

// CUDA graphs: the work an op sequence queues on the stream can be
// captured once and replayed with one launch, which removes the per-launch
// driver cost from decode steps. This is the driver plumbing for that;
// ops that stage host data (Embed, RoPE, Attention, CopyRows, Experts) do
// not capture yet, because a pageable host-to-device copy cannot be
// recorded — a later version keeps their metadata on the device.

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
	return b.d.check(call(b.d.cuStreamBeginCapture, b.stream, captureModeRelaxed), "cuStreamBeginCapture")
}

// endCapture ends the recording and instantiates the graph.
func (b *Backend) endCapture() (*graph, error) {
	b.enter()
	defer b.leave()
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
