package server

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Options configure a Server. The zero value is usable: every field has a
// default.
type Options struct {
	// APIKey, when set, is required on /v1/ requests as
	// "Authorization: Bearer KEY" (compared in constant time). /health and
	// /metrics stay open, as in vLLM.
	APIKey string
	// MaxBodyBytes bounds a request body: 413 beyond it (default 4 MiB).
	MaxBodyBytes int64
	// RequestTimeout bounds a generation request from arrival to its last
	// token (default 10 minutes).
	RequestTimeout time.Duration
	// CORSOrigins lists the origins browsers may call from ("*" for any).
	// Empty: no CORS headers at all.
	CORSOrigins []string
	// MaxSequences bounds the sequences one request may start: n, times
	// the number of prompts for completions (default 16).
	MaxSequences int
	// WriteTimeout bounds each write to a client; a client that reads
	// nothing for that long is dropped (default 1 minute).
	WriteTimeout time.Duration
	// Logger receives one line per request and the errors (default: slog's
	// default logger).
	Logger *slog.Logger
}

func (o *Options) defaults() {
	if o.MaxBodyBytes <= 0 {
		o.MaxBodyBytes = 4 << 20
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = 10 * time.Minute
	}
	if o.MaxSequences <= 0 {
		o.MaxSequences = 16
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = time.Minute
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// Server is the OpenAI-compatible HTTP API. It is an http.Handler; Serve
// runs it on a listener with sensible timeouts, and Shutdown drains it.
type Server struct {
	opts    Options
	log     *slog.Logger
	model   atomic.Pointer[served]
	metrics *metrics
	routes  map[string]route

	// stopCtx is cancelled (with errShuttingDown) when Shutdown's grace
	// period is over: every running request is then cut short.
	stopCtx  context.Context
	stop     context.CancelCauseFunc
	draining atomic.Bool
	active   tracker

	mu   sync.Mutex
	http *http.Server
}

// route is one endpoint: the handler for each method.
type route struct {
	methods map[string]http.HandlerFunc
	allow   string // the Allow header
	auth    bool
}

var (
	errShuttingDown = errors.New("the server is shutting down")
	errDeadline     = errors.New("the request ran past the server's deadline")
)

// New returns a Server with no model: /health answers 503 and the API
// answers 503 until SetModel.
func New(opts Options) *Server {
	opts.defaults()
	s := &Server{opts: opts, log: opts.Logger, metrics: newMetrics()}
	s.stopCtx, s.stop = context.WithCancelCause(context.Background())
	s.routes = map[string]route{
		"/v1/chat/completions": {methods: map[string]http.HandlerFunc{"POST": s.handleChat}, allow: "POST", auth: true},
		"/v1/completions":      {methods: map[string]http.HandlerFunc{"POST": s.handleCompletions}, allow: "POST", auth: true},
		"/v1/models":           {methods: map[string]http.HandlerFunc{"GET": s.handleModels}, allow: "GET", auth: true},
		"/v1/models/":          {methods: map[string]http.HandlerFunc{"GET": s.handleModel}, allow: "GET", auth: true},
		"/health":              {methods: map[string]http.HandlerFunc{"GET": s.handleHealth}, allow: "GET"},
		"/metrics":             {methods: map[string]http.HandlerFunc{"GET": s.handleMetrics}, allow: "GET"},
	}
	return s
}

// SetModel starts serving m; /health answers 200 from then on.
func (s *Server) SetModel(m *Model) error {
	sv, err := newServed(m)
	if err != nil {
		return err
	}
	s.model.Store(sv)
	return nil
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.serve(w, r) }

// Serve accepts connections on l until Shutdown; it then returns nil.
func (s *Server) Serve(l net.Listener) error {
	hs := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	s.mu.Lock()
	if s.draining.Load() {
		s.mu.Unlock()
		l.Close()
		return nil
	}
	s.http = hs
	s.mu.Unlock()
	err := hs.Serve(l)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Shutdown drains the server: it stops accepting connections and new
// requests (503), lets running requests finish until ctx is done (the grace
// period), then cuts the remaining ones short — a stream gets an error
// event and [DONE], a request not yet answered a 503 — waits for their
// handlers to return and closes the connections. It returns ctx's error when
// the grace period ran out, nil when everything finished in time. The
// model's engine is left to the caller to close.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.draining.Store(true)
	hs := s.http
	s.mu.Unlock()
	var err error
	if hs != nil {
		err = hs.Shutdown(ctx) // closes the listeners and idle connections, waits for the rest
	}
	if err == nil {
		err = s.active.wait(ctx)
	}
	if err != nil {
		s.stop(errShuttingDown)
		// handlers notice at once; give them a moment to write their last event
		wctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		s.active.wait(wctx)
		cancel()
		if hs != nil {
			hs.Close() // unblocks writes to clients that stopped reading
		}
		wctx, cancel = context.WithTimeout(context.Background(), 2*time.Second)
		s.active.wait(wctx)
		cancel()
	}
	s.stop(errShuttingDown)
	return err
}

// tracker counts running handlers.
type tracker struct {
	mu   sync.Mutex
	n    int
	idle chan struct{}
}

func (t *tracker) add() {
	t.mu.Lock()
	t.n++
	t.mu.Unlock()
}

func (t *tracker) done() {
	t.mu.Lock()
	if t.n--; t.n == 0 && t.idle != nil {
		close(t.idle)
		t.idle = nil
	}
	t.mu.Unlock()
}

// wait returns when no handler runs, or ctx's error.
func (t *tracker) wait(ctx context.Context) error {
	t.mu.Lock()
	if t.n == 0 {
		t.mu.Unlock()
		return nil
	}
	if t.idle == nil {
		t.idle = make(chan struct{})
	}
	ch := t.idle
	t.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// statusWriter records the status of a response for the metrics and the
// log, and whether anything was written.
type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the connection.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Flush implements http.Flusher.
func (w *statusWriter) Flush() {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	http.NewResponseController(w.ResponseWriter).Flush()
}

// endpointLabel bounds the metrics' endpoint label to the known routes.
func (s *Server) endpointLabel(path string) string {
	if _, ok := s.routes[path]; ok {
		return path
	}
	if len(path) > len("/v1/models/") && path[:len("/v1/models/")] == "/v1/models/" {
		return "/v1/models/{model}"
	}
	return "other"
}

// serve is the outermost handler: tracking, recovery, metrics, logging,
// CORS, routing, method and authentication checks.
func (s *Server) serve(rw http.ResponseWriter, r *http.Request) {
	s.active.add()
	defer s.active.done()
	start := time.Now()
	w := &statusWriter{ResponseWriter: rw}
	s.metrics.inFlight.Add(1)
	defer func() {
		s.metrics.inFlight.Add(-1)
		if p := recover(); p != nil {
			if p == http.ErrAbortHandler {
				panic(p)
			}
			s.log.Error("panic serving request", "method", r.Method, "path", r.URL.Path, "panic", p, "stack", stack())
			if w.status == 0 {
				writeError(w, &apiError{Status: http.StatusInternalServerError, Type: typeServer, Message: "internal server error (the server logged the details)"})
			} else {
				// a stream already started: end it with an error event
				writeSSEError(w, &apiError{Status: http.StatusInternalServerError, Type: typeServer, Message: "internal server error (the server logged the details)"})
			}
		}
		status := w.status
		if status == 0 {
			status = http.StatusOK
		}
		s.metrics.request(s.endpointLabel(r.URL.Path), status)
		s.log.Debug("request", "method", r.Method, "path", r.URL.Path, "status", status, "bytes", w.bytes, "duration", time.Since(start))
	}()

	path := r.URL.Path
	if s.cors(w, r) {
		return
	}
	rt, ok := s.routes[path]
	if !ok && len(path) > len("/v1/models/") && path[:len("/v1/models/")] == "/v1/models/" {
		rt, ok = s.routes["/v1/models/"]
	}
	if !ok {
		writeError(w, &apiError{Status: http.StatusNotFound, Type: typeNotFound, Code: "unknown_url",
			Message: "unknown path " + path + " (the API serves /v1/chat/completions, /v1/completions, /v1/models, /health and /metrics)"})
		return
	}
	h, ok := rt.methods[r.Method]
	if !ok && r.Method == http.MethodHead {
		h, ok = rt.methods[http.MethodGet]
	}
	if !ok {
		w.Header().Set("Allow", rt.allow)
		writeError(w, &apiError{Status: http.StatusMethodNotAllowed, Type: typeInvalidRequest, Code: "method_not_allowed",
			Message: "method " + r.Method + " is not allowed on " + path + "; use " + rt.allow})
		return
	}
	if rt.auth && !s.authorized(w, r) {
		return
	}
	if rt.auth && s.draining.Load() {
		w.Header().Set("Connection", "close")
		writeError(w, &apiError{Status: http.StatusServiceUnavailable, Type: typeUnavailable, Code: "server_shutdown", Message: "the server is shutting down"})
		return
	}
	h(w, r)
}

// current returns the served model, or answers 503 while it loads.
func (s *Server) current(w http.ResponseWriter) *served {
	m := s.model.Load()
	if m == nil {
		writeError(w, &apiError{Status: http.StatusServiceUnavailable, Type: typeUnavailable, Code: "model_loading",
			Message: "the model is still loading; retry shortly", RetryAfter: 2})
	}
	return m
}

func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	switch {
	case s.draining.Load():
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, `{"status":"draining"}`+"\n")
	case s.model.Load() == nil:
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, `{"status":"loading"}`+"\n")
	default:
		io.WriteString(w, `{"status":"ok"}`+"\n")
	}
}

// Run serves on l until ctx is done (e.g. signal.NotifyContext for SIGINT
// and SIGTERM), then drains with Shutdown and the grace period. It returns
// Serve's error, or context.DeadlineExceeded when the grace period ran out
// and requests were cut short.
func (s *Server) Run(ctx context.Context, l net.Listener, grace time.Duration) error {
	served := make(chan error, 1)
	go func() { served <- s.Serve(l) }()
	select {
	case err := <-served:
		s.Shutdown(context.Background())
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	err := s.Shutdown(sctx)
	if serr := <-served; serr != nil && err == nil {
		err = serr
	}
	return err
}
