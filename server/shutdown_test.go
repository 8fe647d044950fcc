package server

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/marlin-llm/marlin/backend/cpu"
	"github.com/marlin-llm/marlin/chat"
	"github.com/marlin-llm/marlin/engine"
)

// streamResult is what a streaming client saw.
type streamResult struct {
	complete bool   // every choice finished and the stream ended with [DONE]
	cleanErr string // the stream ended with an error event and [DONE], or the request got an error object
	err      error  // anything else: a truncated or malformed stream
}

// readStream reads an SSE response to its end and classifies it.
func readStream(resp *http.Response) streamResult {
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return streamResult{err: fmt.Errorf("reading: %w (after %d bytes)", err, len(body))}
	}
	if resp.StatusCode != 200 {
		if strings.Contains(string(body), `"error"`) {
			return streamResult{cleanErr: fmt.Sprintf("status %d: %s", resp.StatusCode, body)}
		}
		return streamResult{err: fmt.Errorf("status %d: %s", resp.StatusCode, body)}
	}
	events, err := sseEvents(body)
	if err != nil {
		return streamResult{err: err}
	}
	var finished bool
	for _, ev := range events[:len(events)-1] {
		if strings.Contains(ev, `"error"`) {
			return streamResult{cleanErr: ev}
		}
		finished = finished || strings.Contains(ev, `"finish_reason":"length"`) || strings.Contains(ev, `"finish_reason":"stop"`)
	}
	if finished {
		return streamResult{complete: true}
	}
	return streamResult{err: fmt.Errorf("stream ends without a finish reason: %q", events[len(events)-2])}
}

// serveOn runs a slow scripted model (delay per step, it writes forever)
// on a real listener, as `marlin serve` does.
func serveOn(t *testing.T, delay time.Duration) (*Server, *engine.Engine, string, chan error) {
	t.Helper()
	tok, ids := scriptTokenizer(t, "word ")
	be := cpu.New(1)
	m := newScriptedModel(be, tok.VocabSize(), ids)
	m.next[ids[0]] = ids[0]
	m.delay = delay
	e, err := engine.New(m, be, engine.Config{})
	if err != nil {
		t.Fatal(err)
	}
	_, _, tmpl := defaultFiles(t)
	s := New(Options{Logger: quietLogger()})
	if err := s.SetModel(&Model{Name: "slow", Engine: e, Tokenizer: tok, Template: tmpl}); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(l) }()
	return s, e, "http://" + l.Addr().String(), done
}

// openStreams opens n streaming requests (chat and completions alternately)
// of maxTokens each and returns, once each has its first event, channels
// with their results.
func openStreams(t *testing.T, client *http.Client, url string, n int, maxTokens func(i int) int) []chan streamResult {
	t.Helper()
	results := make([]chan streamResult, n)
	var opened sync.WaitGroup
	for i := range n {
		results[i] = make(chan streamResult, 1)
		path, body := "/v1/completions", fmt.Sprintf(`{"prompt":"ROMEO:","max_tokens":%d,"stream":true}`, maxTokens(i))
		if i%2 == 1 {
			path, body = "/v1/chat/completions", fmt.Sprintf(`{"messages":[{"role":"user","content":"hi"}],"max_tokens":%d,"stream":true,"stream_options":{"include_usage":true}}`, maxTokens(i))
		}
		opened.Add(1)
		go func() {
			resp, err := client.Post(url+path, "application/json", strings.NewReader(body))
			if err != nil {
				opened.Done()
				results[i] <- streamResult{err: err}
				return
			}
			// wait for the first event, then hand the rest to readStream
			r := bufio.NewReader(resp.Body)
			var head strings.Builder
			for !strings.HasPrefix(head.String(), "data: ") || !strings.HasSuffix(head.String(), "\n\n") {
				line, err := r.ReadString('\n')
				head.WriteString(line)
				if err != nil {
					break
				}
			}
			opened.Done()
			resp.Body = struct {
				io.Reader
				io.Closer
			}{io.MultiReader(strings.NewReader(head.String()), r), resp.Body}
			results[i] <- readStream(resp)
		}()
	}
	opened.Wait()
	return results
}

// TestShutdown: 16 streams are open when Shutdown is called. Those that can
// finish within the grace period do; the others end with a clean error
// event and [DONE]; Shutdown returns right after the grace period; nothing
// leaks.
func TestShutdown(t *testing.T) {
	base := runtime.NumGoroutine()
	s, e, url, served := serveOn(t, 3*time.Millisecond)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 32}}
	// even streams: 20 tokens (~60 ms); odd ones: the whole context (~1.5 s)
	results := openStreams(t, client, url, 16, func(i int) int {
		if i%2 == 0 {
			return 20
		}
		return 100000
	})
	grace := 700 * time.Millisecond
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	err := s.Shutdown(ctx)
	took := time.Since(start)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown: %v, want the grace period's deadline", err)
	}
	if took > grace+time.Second {
		t.Errorf("Shutdown took %v with a grace period of %v", took, grace)
	}
	if err := <-served; err != nil {
		t.Errorf("Serve: %v", err)
	}
	for i, ch := range results {
		r := <-ch
		switch {
		case r.err != nil:
			t.Errorf("stream %d: %v", i, r.err)
		case i%2 == 0 && !r.complete:
			t.Errorf("stream %d (20 tokens) did not complete: %s", i, r.cleanErr)
		case i%2 == 1 && !strings.Contains(r.cleanErr, "shutting down"):
			t.Errorf("stream %d: cut short without the shutdown error: %v %s", i, r.err, r.cleanErr)
		}
	}
	if _, err := client.Post(url+"/v1/completions", "application/json", strings.NewReader(`{"prompt":"a"}`)); err == nil {
		t.Error("a request after Shutdown was answered")
	}
	if code := s.handlerStatus("/health"); code != 503 {
		t.Errorf("/health while shut down: %d", code)
	}
	e.Close()
	client.CloseIdleConnections()
	checkNoLeaks(t, base)
}

// TestShutdownInTime: when every stream finishes within the grace period,
// Shutdown returns nil after they did, and every client got a complete
// response.
func TestShutdownInTime(t *testing.T) {
	base := runtime.NumGoroutine()
	s, e, url, served := serveOn(t, time.Millisecond)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 32}}
	results := openStreams(t, client, url, 16, func(int) int { return 60 })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	<-served
	for i, ch := range results {
		if r := <-ch; !r.complete {
			t.Errorf("stream %d: %v %s", i, r.err, r.cleanErr)
		}
	}
	e.Close()
	client.CloseIdleConnections()
	checkNoLeaks(t, base)
}

// handlerStatus runs a request through the handler directly.
func (s *Server) handlerStatus(path string) int {
	rec := &statusRecorder{h: http.Header{}}
	req, _ := http.NewRequest("GET", path, nil)
	s.ServeHTTP(rec, req)
	return rec.code
}

type statusRecorder struct {
	h    http.Header
	code int
}

func (r *statusRecorder) Header() http.Header         { return r.h }
func (r *statusRecorder) Write(b []byte) (int, error) { return len(b), nil }
func (r *statusRecorder) WriteHeader(code int)        { r.code = code }

// TestShutdownSIGTERM runs the server in a child process (this test binary)
// that drains on SIGTERM as `marlin serve` does, and checks what 16 clients
// see when the signal comes.
func TestShutdownSIGTERM(t *testing.T) {
	if os.Getenv("MARLIN_SIGTERM_CHILD") == "1" {
		sigtermChild()
		return
	}
	if runtime.GOOS == "windows" {
		t.Skip("no SIGTERM on Windows")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Skip(err)
	}
	cmd := exec.Command(exe, "-test.run=^TestShutdownSIGTERM$")
	cmd.Env = append(os.Environ(), "MARLIN_SIGTERM_CHILD=1")
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	lines := bufio.NewScanner(stdout)
	var url string
	for lines.Scan() {
		if u, ok := strings.CutPrefix(lines.Text(), "LISTENING "); ok {
			url = u
			break
		}
	}
	if url == "" {
		t.Fatal("the child did not start")
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 32}}
	defer client.CloseIdleConnections()
	results := openStreams(t, client, url, 16, func(i int) int {
		if i%2 == 0 {
			return 20
		}
		return 100000
	})
	start := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	var exitLine string
	for lines.Scan() {
		if strings.HasPrefix(lines.Text(), "EXIT ") {
			exitLine = lines.Text()
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("child: %v", err)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("the child took %v to exit (grace 700ms)", took)
	}
	if exitLine != "EXIT grace period over" {
		t.Errorf("child said %q", exitLine)
	}
	for i, ch := range results {
		r := <-ch
		switch {
		case r.err != nil:
			t.Errorf("stream %d: %v", i, r.err)
		case i%2 == 0 && !r.complete:
			t.Errorf("stream %d (20 tokens) did not complete: %s", i, r.cleanErr)
		case i%2 == 1 && !strings.Contains(r.cleanErr, "shutting down"):
			t.Errorf("stream %d: %v %s", i, r.err, r.cleanErr)
		}
	}
}

// sigtermChild is the child process of TestShutdownSIGTERM.
func sigtermChild() {
	tok, err := loadDefaultTokenizer()
	if err != nil {
		fmt.Println("EXIT", err)
		os.Exit(1)
	}
	tok2, ids := scriptTokenizerFrom(tok, "word ")
	be := cpu.New(1)
	m := newScriptedModel(be, tok2.VocabSize(), ids)
	m.next[ids[0]] = ids[0]
	m.delay = 3 * time.Millisecond
	e, err := engine.New(m, be, engine.Config{})
	if err != nil {
		fmt.Println("EXIT", err)
		os.Exit(1)
	}
	tmpl, _ := chat.New("{% for m in messages %}{{ m.content }}{% endfor %}", nil)
	s := New(Options{Logger: quietLogger()})
	s.SetModel(&Model{Name: "slow", Engine: e, Tokenizer: tok2, Template: tmpl})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Println("EXIT", err)
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	fmt.Println("LISTENING http://" + l.Addr().String())
	err = s.Run(ctx, l, 700*time.Millisecond)
	e.Close()
	if errors.Is(err, context.DeadlineExceeded) {
		fmt.Println("EXIT grace period over")
	} else {
		fmt.Println("EXIT", err)
	}
	os.Exit(0)
}
