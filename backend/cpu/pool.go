package cpu

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// pool keeps the backend's helper goroutines alive between ops. A decode
// step is a hundred ops or more, each a few microseconds to a millisecond
// long; starting goroutines for each (waking an idle OS thread through a
// futex, 5–50 µs before it runs) left one core idle for a third of a
// batched decode step. Helpers instead wait for the next op by spinning
// for spinFor, calling runtime.Gosched between looks so that any other
// runnable goroutine (the server's streams) gets the core first, and only
// then park on a channel.
//
// One op runs on the pool at a time; a parallel call that finds it busy
// (concurrent forward passes, or an op started from inside another) starts
// its own goroutines instead.
type pool struct {
	busy    sync.Mutex
	job     atomic.Pointer[job]
	gen     atomic.Uint64 // bumped for every job, so helpers see new work
	helpers []*helper
	quit    atomic.Bool
	running atomic.Int32 // helper goroutines that have not exited
}

type helper struct {
	parked atomic.Bool
	wake   chan struct{} // buffered 1: a wake-up is never lost
}

// job is one parallel op: chunks pieces of per units each, taken in order.
type job struct {
	fn          func(lo, hi int)
	n, per      int
	chunks      int64
	next, ended atomic.Int64
}

// spinFor is how long an idle helper keeps looking for work before it
// parks: longer than the gaps between the ops of a forward pass, short
// enough that an idle server does not keep a core busy.
const spinFor = 200 * time.Microsecond

func newPool(helpers int) *pool {
	p := &pool{helpers: make([]*helper, helpers)}
	for i := range p.helpers {
		h := &helper{wake: make(chan struct{}, 1)}
		p.helpers[i] = h
		p.running.Add(1)
		go p.serve(h)
	}
	return p
}

// close stops the helpers (they exit at their next look).
func (p *pool) close() {
	p.quit.Store(true)
	for _, h := range p.helpers {
		select {
		case h.wake <- struct{}{}:
		default:
		}
	}
}

func (p *pool) serve(h *helper) {
	defer p.running.Add(-1)
	seen := p.gen.Load()
	for {
		deadline := time.Now().Add(spinFor)
		for spins := 0; p.gen.Load() == seen && !p.quit.Load(); spins++ {
			if spins%64 == 63 && time.Now().After(deadline) {
				h.parked.Store(true)
				if p.gen.Load() == seen && !p.quit.Load() { // re-check: a job may have come before parked was set
					<-h.wake
				}
				h.parked.Store(false)
				deadline = time.Now().Add(spinFor)
			}
			runtime.Gosched()
		}
		if p.quit.Load() {
			return
		}
		seen = p.gen.Load()
		if j := p.job.Load(); j != nil {
			j.run()
		}
	}
}

// run takes chunks of j until none is left.
func (j *job) run() {
	for {
		i := j.next.Add(1) - 1
		if i >= j.chunks {
			return
		}
		lo := int(i) * j.per
		j.fn(lo, min(lo+j.per, j.n))
		j.ended.Add(1)
	}
}

// do runs j on the calling goroutine and the helpers and returns when every
// chunk has ended. It reports false, doing nothing, when the pool is busy.
func (p *pool) do(j *job) bool {
	if !p.busy.TryLock() {
		return false
	}
	defer p.busy.Unlock()
	p.job.Store(j)
	p.gen.Add(1)
	for _, h := range p.helpers {
		if h.parked.Load() {
			select {
			case h.wake <- struct{}{}:
			default:
			}
		}
	}
	j.run()
	for j.ended.Load() < j.chunks {
		runtime.Gosched()
	}
	p.job.Store(nil)
	return true
}
