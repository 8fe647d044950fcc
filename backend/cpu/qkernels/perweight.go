package qkernels

import (
	"runtime"
	"sync"
	"sync/atomic"
	"unsafe"
	"weak"

	"github.com/marlin-llm/marlin/quant"
)

// perWeight keeps one value of type T for each live Weight (a working copy
// the kernels made from it), by the Weight's address. An entry is valid
// only while its weak pointer still points to the Weight asking (a Weight
// allocated later at the same address gets a new entry), and goes when its
// Weight is collected; valid also checks that the value still describes the
// Weight's buffers.
type perWeight[T any] struct {
	m  sync.Map // uintptr(*quant.Weight) → *perWeightEntry[T]
	mu sync.Mutex
}

type perWeightEntry[T any] struct {
	w weak.Pointer[quant.Weight]
	v atomic.Pointer[T]
}

// get returns w's value, making it with build on first use (concurrent
// callers wait for the one that builds it). build must not return nil (a
// weight with nothing to keep gets a value that says so).
func (c *perWeight[T]) get(w *quant.Weight, build func(*quant.Weight) *T, valid func(*T, *quant.Weight) bool) *T {
	key := uintptr(unsafe.Pointer(w))
	if e, ok := c.m.Load(key); ok {
		e := e.(*perWeightEntry[T])
		if v := e.v.Load(); v != nil && e.w.Value() == w && valid(v, w) {
			return v
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.m.Load(key); ok {
		e := e.(*perWeightEntry[T])
		if e.w.Value() == w {
			v := e.v.Load()
			if v == nil || !valid(v, w) {
				v = build(w)
				e.v.Store(v)
			}
			return v
		}
	}
	e := &perWeightEntry[T]{w: weak.Make(w)}
	v := build(w)
	e.v.Store(v)
	c.m.Store(key, e)
	runtime.AddCleanup(w, func(e *perWeightEntry[T]) { c.m.CompareAndDelete(key, e) }, e)
	return v
}
