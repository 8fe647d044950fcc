package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/marlin-llm/marlin/backend"
	"github.com/marlin-llm/marlin/backend/cpu"
	"github.com/marlin-llm/marlin/backend/cuda"
	"github.com/marlin-llm/marlin/chat"
	"github.com/marlin-llm/marlin/defaultmodel"
	"github.com/marlin-llm/marlin/engine"
	"github.com/marlin-llm/marlin/model"
	"github.com/marlin-llm/marlin/tokenizer"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
)

// The embedded default model's files, tokenizer and template are loaded
// once; every test server gets its own model instance (a model runs one
// forward pass at a time) and engine.
var defaults struct {
	once sync.Once
	dir  string
	tok  *tokenizer.Tokenizer
	tmpl *chat.Template
	err  error
}

func defaultFiles(t testing.TB) (string, *tokenizer.Tokenizer, *chat.Template) {
	t.Helper()
	defaults.once.Do(func() {
		if defaults.dir, defaults.err = defaultmodel.Dir(); defaults.err != nil {
			return
		}
		if defaults.tok, defaults.err = tokenizer.Load(defaults.dir); defaults.err != nil {
			return
		}
		defaults.tmpl, defaults.err = chat.Load(defaults.dir)
	})
	if defaults.err != nil {
		t.Fatal(defaults.err)
	}
	return defaults.dir, defaults.tok, defaults.tmpl
}

// quietLogger drops the server's log lines (tests check behaviour, not logs).
func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// testServer is a Server on an httptest server with its engine.
type testServer struct {
	*Server
	ts     *httptest.Server
	engine *engine.Engine
	url    string
}

// serverDevice picks the backend of newDefaultServer. The default, the CPU,
// is what CI runs; on a GPU machine `-server.device cuda` runs the same
// tests (TestBatchInvariance, TestLoad) on the CUDA backend.
var serverDevice = flag.String("server.device", "cpu", "backend of the test servers: cpu or cuda")

// newDefaultServer serves the embedded default model on the backend
// -server.device names (the CPU unless told).
func newDefaultServer(t testing.TB, opts Options, cfg engine.Config) *testServer {
	t.Helper()
	dir, tok, tmpl := defaultFiles(t)
	var be backend.Backend
	switch *serverDevice {
	case "cpu":
		be = cpu.New(0)
	case "cuda":
		g, err := cuda.New(0)
		if err != nil {
			t.Fatalf("-server.device cuda: %v", err)
		}
		be = g
	default:
		t.Fatalf("-server.device %q: want cpu or cuda", *serverDevice)
	}
	m, err := model.Load(dir, be)
	if err != nil {
		be.Close()
		t.Fatal(err)
	}
	e, err := engine.New(m, be, cfg)
	if err != nil {
		m.Close()
		be.Close()
		t.Fatal(err)
	}
	return startServer(t, opts, &Model{Name: defaultmodel.Name, Engine: e, Tokenizer: tok, Template: tmpl}, func() { m.Close(); be.Close() })
}

func startServer(t testing.TB, opts Options, md *Model, closeModel func()) *testServer {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = quietLogger()
	}
	s := New(opts)
	if err := s.SetModel(md); err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s)
	t.Cleanup(func() {
		ts.Close()
		md.Engine.Close()
		closeModel()
	})
	return &testServer{Server: s, ts: ts, engine: md.Engine, url: ts.URL}
}

// client returns an official OpenAI client for the server, without retries
// (errors must surface as they are).
func (s *testServer) client(opts ...option.RequestOption) openai.Client {
	base := []option.RequestOption{option.WithBaseURL(s.url + "/v1/"), option.WithAPIKey("test-key"), option.WithMaxRetries(0)}
	return openai.NewClient(append(base, opts...)...)
}

// post sends a JSON body and returns the status and the body.
func (s *testServer) post(t testing.TB, path, body string, header ...string) (int, []byte, http.Header) {
	t.Helper()
	req, err := http.NewRequest("POST", s.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b, resp.Header
}

func (s *testServer) get(t testing.TB, path string) (int, []byte) {
	t.Helper()
	resp, err := http.Get(s.url + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// sseEvents splits an event stream into its data payloads, checking the
// framing: every event is "data: ..." and the stream ends with [DONE].
func sseEvents(body []byte) ([]string, error) {
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "" || strings.HasPrefix(line, ":"):
		case strings.HasPrefix(line, "data: "):
			out = append(out, strings.TrimPrefix(line, "data: "))
		default:
			return out, fmt.Errorf("unexpected line %q", line)
		}
	}
	if len(out) == 0 || out[len(out)-1] != "[DONE]" {
		return out, fmt.Errorf("stream does not end with [DONE] (%d events)", len(out))
	}
	for _, d := range out[:len(out)-1] {
		if !json.Valid([]byte(d)) {
			return out, fmt.Errorf("event is not JSON: %q", d)
		}
	}
	return out, nil
}

// errorMessage decodes an error body, failing the test when it is not
// OpenAI's error object.
func errorMessage(t testing.TB, body []byte) (msg, param string) {
	t.Helper()
	var e struct {
		Error *struct {
			Message string  `json:"message"`
			Type    string  `json:"type"`
			Param   *string `json:"param"`
			Code    *string `json:"code"`
		} `json:"error"`
	}
	if err := json.Unmarshal(body, &e); err != nil || e.Error == nil || e.Error.Message == "" || e.Error.Type == "" {
		t.Fatalf("not an error object: %s", body)
	}
	if e.Error.Param != nil {
		param = *e.Error.Param
	}
	return e.Error.Message, param
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(5 * time.Millisecond)
	}
	return cond()
}

// checkNoLeaks fails when goroutines started after base are still running
// once the test's resources are released (a settle loop: goroutines take a
// moment to exit), or when any goroutine of a server, a connection, a
// request or an engine is left.
func checkNoLeaks(t *testing.T, base int) {
	t.Helper()
	markers := []string{"marlin/server.(*job)", "marlin/server.(*Server)", "net/http.(*conn).serve", "marlin/engine.(*Engine).loop", "net/http.(*persistConn)"}
	leaked := func() string {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		for _, g := range strings.Split(string(buf), "\n\n") {
			for _, m := range markers {
				if strings.Contains(g, m) {
					return g
				}
			}
		}
		return ""
	}
	if !waitFor(5*time.Second, func() bool { return runtime.NumGoroutine() <= base && leaked() == "" }) {
		buf := make([]byte, 1<<20)
		n := runtime.Stack(buf, true)
		t.Errorf("goroutine leak: %d running, %d before; left: %s\n%s", runtime.NumGoroutine(), base, leaked(), buf[:n])
	}
}

// metricValue reads one sample of /metrics.
func (s *testServer) metricValue(t testing.TB, name string) float64 {
	t.Helper()
	_, body := s.get(t, "/metrics")
	for _, line := range strings.Split(string(body), "\n") {
		if rest, ok := strings.CutPrefix(line, name+" "); ok {
			var v float64
			fmt.Sscan(rest, &v)
			return v
		}
	}
	t.Fatalf("metric %s not found in\n%s", name, body)
	return 0
}

var _ = context.Background
var _ = os.Getenv

func chatInput(messages string) chat.Input {
	return chat.Input{Messages: json.RawMessage(messages), AddGenerationPrompt: true}
}
