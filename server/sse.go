package server

import (
	"encoding/json"
	"net/http"
	"runtime/debug"
	"time"
)

// sseWriter writes a server-sent event stream: "data: JSON\n\n" events,
// each flushed at once, and "data: [DONE]\n\n" at the end.
type sseWriter struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
	buf     []byte
	started bool
	err     error // the first write error: the client is gone
}

func newSSEWriter(w http.ResponseWriter, writeTimeout time.Duration) *sseWriter {
	return &sseWriter{w: w, rc: http.NewResponseController(w), timeout: writeTimeout}
}

func (s *sseWriter) start() {
	if s.started {
		return
	}
	s.started = true
	h := s.w.Header()
	h.Set("Content-Type", "text/event-stream; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	h.Set("Connection", "keep-alive")
	h.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	s.w.WriteHeader(http.StatusOK)
}

func (s *sseWriter) write(b []byte) error {
	if s.err != nil {
		return s.err
	}
	s.start()
	if s.timeout > 0 {
		s.rc.SetWriteDeadline(time.Now().Add(s.timeout)) // not every writer supports it
	}
	if _, err := s.w.Write(b); err != nil {
		s.err = err
		return err
	}
	if err := s.rc.Flush(); err != nil {
		s.err = err
	}
	return s.err
}

// event writes v as one data event.
func (s *sseWriter) event(v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	s.buf = append(append(append(s.buf[:0], "data: "...), data...), "\n\n"...)
	return s.write(s.buf)
}

// comment writes an SSE comment, which clients ignore: it keeps proxies
// from timing out an idle stream.
func (s *sseWriter) comment(text string) error { return s.write([]byte(": " + text + "\n\n")) }

// done ends the stream.
func (s *sseWriter) done() error { return s.write([]byte("data: [DONE]\n\n")) }

// fail ends a stream with an error event (OpenAI's error object, which the
// clients raise) and [DONE]; before the stream started it answers with a
// plain JSON error instead.
func (s *sseWriter) fail(e *apiError) {
	if !s.started {
		writeError(s.w, e)
		return
	}
	s.event(e.body())
	s.done()
}

// writeSSEError ends a started stream with an error event.
func writeSSEError(w http.ResponseWriter, e *apiError) {
	s := &sseWriter{w: w, rc: http.NewResponseController(w), started: true}
	s.fail(e)
}

func stack() string { return string(debug.Stack()) }
