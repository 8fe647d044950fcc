//go:build linux && !nocuda

package cuda

import (
	"time"
	"unsafe"
)

// event is a CUDA event recorded on the backend's stream, for timing
// device work without synchronising after every op.
type event struct {
	b *Backend
	e uintptr
}

// newEvent creates a timing event (nil, with the sticky error set, on
// failure).
func (b *Backend) newEvent() *event {
	b.enter()
	defer b.leave()
	ev := &event{b: b}
	if !b.checkCall(call(b.d.cuEventCreate, uintptr(unsafe.Pointer(&ev.e)), eventDefault), "cuEventCreate") {
		return nil
	}
	return ev
}

// record queues the event on the stream: it completes when the work
// queued before it has.
func (ev *event) record() {
	b := ev.b
	b.enter()
	defer b.leave()
	b.flush() // recorded ops come before the event
	b.checkCall(call(b.d.cuEventRecord, ev.e, b.stream), "cuEventRecord")
}

// since waits for ev and returns the device time between start and ev.
func (ev *event) since(start *event) time.Duration {
	b := ev.b
	b.enter()
	defer b.leave()
	if !b.checkCall(call(b.d.cuEventSynchronize, ev.e), "cuEventSynchronize") {
		return 0
	}
	var ms float32
	if !b.checkCall(call(b.d.cuEventElapsedTime, uintptr(unsafe.Pointer(&ms)), start.e, ev.e), "cuEventElapsedTime") {
		return 0
	}
	return time.Duration(float64(ms) * 1e6)
}

// destroy frees the event.
func (ev *event) destroy() {
	b := ev.b
	b.enter()
	defer b.leave()
	call(b.d.cuEventDestroy, ev.e)
}
