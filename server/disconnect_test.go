package server

import (
	"bufio"
	"context"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/marlin-llm/marlin/engine"
)

// openStream starts a streaming request and returns the response once its
// first data event arrived.
func openStream(t testing.TB, ctx context.Context, client *http.Client, url, body string) (*http.Response, *bufio.Reader) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, "POST", url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	r := bufio.NewReader(resp.Body)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("stream ended before its first event: %v", err)
		}
		if strings.HasPrefix(line, "data: ") {
			return resp, r
		}
	}
}

// TestDisconnectFreesBlocks: a client that goes away mid-stream cancels its
// sequence, whose KV blocks are free at once (the engine's stats and
// /metrics agree).
func TestDisconnectFreesBlocks(t *testing.T) {
	for _, slow := range []bool{false, true} {
		var s *testServer
		if slow {
			s = newSlowServer(t, Options{}, engine.Config{}, 5*time.Millisecond)
		} else {
			s = newDefaultServer(t, Options{}, engine.Config{})
		}
		client := &http.Client{Transport: &http.Transport{}}
		body := `{"prompt":"ROMEO:","max_tokens":500,"stream":true}`
		resp, _ := openStream(t, context.Background(), client, s.url+"/v1/completions", body)
		t.Cleanup(func() { // (when a check below fails: no connection left for the next test's leak check)
			resp.Body.Close()
			client.CloseIdleConnections()
		})
		st := s.engine.Stats()
		if st.KVBlocksUsed == 0 || st.Running != 1 {
			t.Fatalf("while streaming: %+v", st)
		}
		if used := s.metricValue(t, "marlin_kv_cache_blocks_used"); used == 0 {
			t.Errorf("/metrics shows no blocks in use while streaming")
		}
		steps := st.Steps
		resp.Body.Close() // the client goes away
		client.CloseIdleConnections()
		if !waitFor(2*time.Second, func() bool { st := s.engine.Stats(); return st.KVBlocksUsed == 0 && st.Running == 0 }) {
			t.Fatalf("slow %v: blocks still held after the disconnect: %+v", slow, s.engine.Stats())
		}
		if st := s.engine.Stats(); st.Steps-steps >= 450 {
			t.Errorf("slow %v: the sequence ran to its end (%d steps) instead of being cancelled", slow, st.Steps-steps)
		}
		if used := s.metricValue(t, "marlin_kv_cache_blocks_used"); used != 0 {
			t.Errorf("/metrics: %g blocks used after the disconnect", used)
		}
	}
}

// TestDeadline: a request that runs past the server's deadline ends with a
// 504 (plain) or an error event (stream), and frees its blocks.
func TestDeadline(t *testing.T) {
	s := newSlowServer(t, Options{RequestTimeout: 200 * time.Millisecond}, engine.Config{}, 5*time.Millisecond)
	code, body, h := s.post(t, "/v1/completions", `{"prompt":"a","max_tokens":400}`)
	if msg, _ := errorMessage(t, body); code != 504 || !strings.Contains(msg, "deadline of 200ms") || h.Get("X-Should-Retry") != "false" {
		t.Errorf("%d %s", code, body)
	}
	code, body, _ = s.post(t, "/v1/chat/completions", `{"messages":[{"role":"user","content":"a"}],"stream":true}`)
	events, err := sseEvents(body)
	if code != 200 || err != nil || !strings.Contains(events[len(events)-2], `"error"`) || !strings.Contains(events[len(events)-2], "deadline") {
		t.Errorf("stream: %d %v %q", code, err, events)
	}
	if !waitFor(2*time.Second, func() bool { return s.engine.Stats().KVBlocksUsed == 0 }) {
		t.Errorf("blocks held after the deadline: %+v", s.engine.Stats())
	}
}

var metricLine = regexp.MustCompile(`^(# (HELP|TYPE) [a-z_]+ .+|[a-z_]+(\{[a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*\})? [-+0-9.eEInf]+)$`)

// TestMetrics: /metrics is valid Prometheus text and counts requests by
// endpoint and status, tokens, latencies and the engine's state.
func TestMetrics(t *testing.T) {
	s := newDefaultServer(t, Options{}, engine.Config{})
	s.post(t, "/v1/completions", `{"prompt":"ROMEO:","max_tokens":5}`)
	s.post(t, "/v1/completions", `{"prompt":"ROMEO:","max_tokens":5,"stream":true}`)
	s.post(t, "/v1/completions", `{"prompt":"ROMEO:","temperature":9}`)
	s.get(t, "/v1/models")
	code, body := s.get(t, "/metrics")
	if code != 200 {
		t.Fatal(code)
	}
	text := string(body)
	for _, line := range strings.Split(strings.TrimSpace(text), "\n") {
		if !metricLine.MatchString(line) {
			t.Errorf("bad line %q", line)
		}
	}
	for _, want := range []string{
		`marlin_requests_total{endpoint="/v1/completions",status="200"} 2`,
		`marlin_requests_total{endpoint="/v1/completions",status="400"} 1`,
		`marlin_requests_total{endpoint="/v1/models",status="200"} 1`,
		"marlin_generation_tokens_total 10",
		"marlin_time_to_first_token_seconds_count 2",
		"marlin_inter_token_latency_seconds_count 8",
		`marlin_time_to_first_token_seconds_bucket{le="+Inf"} 2`,
		"marlin_queue_depth 0", "marlin_running_sequences 0", "marlin_kv_cache_blocks_used 0", "marlin_preemptions_total 0",
		"marlin_model_loaded 1", "# TYPE marlin_inter_token_latency_seconds histogram",
	} {
		if !strings.Contains(text, want+"\n") {
			t.Errorf("missing %q", want)
		}
	}
	if s.metricValue(t, "marlin_kv_cache_blocks_total") <= 0 || s.metricValue(t, "marlin_prompt_tokens_total") <= 0 {
		t.Errorf("metrics:\n%s", text)
	}
}
