package server

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/marlin-llm/marlin/dtype"
	"github.com/marlin-llm/marlin/engine"
)

var (
	loadFlag     = flag.Bool("load", false, "run TestLoad: many streaming clients against the embedded model")
	loadDuration = flag.Duration("load.duration", 60*time.Second, "TestLoad: how long the concurrent clients send requests")
	loadSingle   = flag.Duration("load.single", 15*time.Second, "TestLoad: how long the single client runs first")
	loadClients  = flag.Int("load.clients", 64, "TestLoad: concurrent clients")
	loadTokens   = flag.Int("load.max-tokens", 128, "TestLoad: max_tokens of each request")
	loadKV       = flag.String("load.kv-type", "f32", "TestLoad: KV cache type (f32, f16, bf16)")
)

// loadStats is what a load run measured on the client side.
type loadStats struct {
	mu         sync.Mutex
	requests   int
	tokens     int // completion tokens, from each stream's usage
	errors     []string
	ttft, itl  []time.Duration
	start, end time.Time
}

func (s *loadStats) fail(format string, args ...any) {
	s.mu.Lock()
	if len(s.errors) < 20 {
		s.errors = append(s.errors, fmt.Sprintf(format, args...))
	} else {
		s.errors = append(s.errors[:20], "...")
	}
	s.mu.Unlock()
}

func (s *loadStats) rate() float64 { return float64(s.tokens) / s.end.Sub(s.start).Seconds() }

func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	return d[min(len(d)-1, int(p*float64(len(d))))]
}

func (s *loadStats) String() string {
	return fmt.Sprintf("%d requests, %d tokens in %v: %.0f tokens/s; TTFT p50 %v p99 %v; ITL p50 %v p99 %v; %d errors",
		s.requests, s.tokens, s.end.Sub(s.start).Round(time.Millisecond), s.rate(),
		percentile(s.ttft, 0.5).Round(10*time.Microsecond), percentile(s.ttft, 0.99).Round(10*time.Microsecond),
		percentile(s.itl, 0.5).Round(10*time.Microsecond), percentile(s.itl, 0.99).Round(10*time.Microsecond), len(s.errors))
}

var loadWords = strings.Fields("the king queen lord lady love death night day sword crown heaven earth fair foul speak hear blood honour grace war peace tomorrow father son brother friend enemy England France Rome")

// streamOnce sends one streaming chat request and checks the stream
// strictly: every line is an SSE data line (or a comment), every event is
// a JSON chunk, the choice finishes exactly once, usage comes last and
// [DONE] ends it.
func streamOnce(client *http.Client, url string, rng *rand.Rand, maxTokens int, st *loadStats) {
	body := fmt.Sprintf(`{"messages":[{"role":"user","content":%q}],"max_tokens":%d,"temperature":0.8,"stream":true,"stream_options":{"include_usage":true}}`, loadMessage(rng), maxTokens)
	sent := time.Now()
	resp, err := client.Post(url+"/v1/chat/completions", "application/json", strings.NewReader(body))
	if err != nil {
		st.fail("request: %v", err)
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		st.fail("status %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
		return
	}
	r := bufio.NewReaderSize(resp.Body, 64<<10)
	var ttft time.Duration
	var itl []time.Duration
	var last time.Time
	finishes, usageTokens, content := 0, -1, 0
	done := false
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			if !done {
				st.fail("stream truncated after %d content chunks: %v", content, err)
				return
			}
			break
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case line == "" || strings.HasPrefix(line, ": "):
			continue
		case done:
			st.fail("data after [DONE]: %q", line)
			return
		case line == "data: [DONE]":
			done = true
			continue
		case !strings.HasPrefix(line, "data: "):
			st.fail("not an SSE data line: %q", line)
			return
		}
		var ch struct {
			Object  string `json:"object"`
			Choices []struct {
				Delta struct {
					Content *string `json:"content"`
				} `json:"delta"`
				FinishReason *string `json:"finish_reason"`
			} `json:"choices"`
			Usage *struct {
				CompletionTokens int `json:"completion_tokens"`
			} `json:"usage"`
			Error any `json:"error"`
		}
		if err := json.Unmarshal([]byte(line[6:]), &ch); err != nil || ch.Error != nil || ch.Object != "chat.completion.chunk" {
			st.fail("bad event %q: %v", line, err)
			return
		}
		now := time.Now()
		for _, c := range ch.Choices {
			if c.Delta.Content != nil && *c.Delta.Content != "" {
				if content == 0 {
					ttft = now.Sub(sent)
				} else {
					itl = append(itl, now.Sub(last))
				}
				last = now
				content++
			}
			if c.FinishReason != nil {
				finishes++
			}
		}
		if ch.Usage != nil {
			usageTokens = ch.Usage.CompletionTokens
		}
	}
	if finishes != 1 || usageTokens <= 0 || usageTokens > maxTokens {
		st.fail("finish reasons %d, usage %d tokens", finishes, usageTokens)
		return
	}
	st.mu.Lock()
	st.requests++
	st.tokens += usageTokens
	st.ttft = append(st.ttft, ttft)
	st.itl = append(st.itl, itl...)
	st.mu.Unlock()
}

// runLoad runs clients streaming requests back to back for d.
func runLoad(url string, clients int, d time.Duration, maxTokens int) *loadStats {
	st := &loadStats{start: time.Now()}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients + 8}}
	defer client.CloseIdleConnections()
	deadline := st.start.Add(d)
	var wg sync.WaitGroup
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(i), 99))
			for time.Now().Before(deadline) {
				streamOnce(client, url, rng, maxTokens, st)
			}
		}()
	}
	wg.Wait()
	st.end = time.Now()
	return st
}

func loadEngineConfig(clients, maxTokens int) engine.Config {
	// room for every client's sequence: no preemption in steady state
	kv, _ := dtype.Parse(strings.ToUpper(*loadKV))
	return engine.Config{MaxSeqs: clients, CacheTokens: clients * (maxTokens + 64), KVType: kv}
}

// TestLoadSmall is the always-on short version of TestLoad: 16 streaming
// clients for 2 s, every stream complete and well-formed.
func TestLoadSmall(t *testing.T) {
	s := newDefaultServer(t, Options{}, loadEngineConfig(16, 32))
	st := runLoad(s.url, 16, 2*time.Second, 32)
	t.Log(st)
	if len(st.errors) > 0 || st.requests == 0 {
		t.Errorf("%d errors: %q", len(st.errors), st.errors)
	}
	if !waitFor(2*time.Second, func() bool { return s.engine.Stats().KVBlocksUsed == 0 }) {
		t.Errorf("blocks held after the load: %+v", s.engine.Stats())
	}
}

// TestLoad (go test ./server -run TestLoad -load -v): one streaming client
// alone, then 64 concurrent streaming clients for 60 s against the
// embedded model on the CPU backend (-server.device cuda: on the GPU),
// over loopback. No errors, no truncated
// or malformed streams, and batching must pay: the aggregate token rate is
// at least 4× the single client's.
func TestLoad(t *testing.T) {
	if !*loadFlag {
		t.Skip("run with -load")
	}
	s := newDefaultServer(t, Options{}, loadEngineConfig(*loadClients, *loadTokens))
	t.Logf("device %s, GOMAXPROCS %d", *serverDevice, runtime.GOMAXPROCS(0))
	t.Logf("engine alone (no HTTP), 1 client: %.0f tokens/s; %d clients: %.0f tokens/s",
		engineAlone(t, s, *loadSingle/3, *loadTokens, 1), *loadClients, engineAlone(t, s, *loadSingle/3, *loadTokens, *loadClients))
	single := runLoad(s.url, 1, *loadSingle, *loadTokens)
	t.Logf("1 client:   %v", single)
	steps := s.engine.Stats().Steps
	many := runLoad(s.url, *loadClients, *loadDuration, *loadTokens)
	st := s.engine.Stats()
	t.Logf("%d clients: %v", *loadClients, many)
	t.Logf("engine: %d steps, %.1f sequences per step, %d preemptions", st.Steps-steps, float64(many.tokens)/float64(st.Steps-steps), st.Preemptions)
	ratio := many.rate() / single.rate()
	t.Logf("aggregate / single-client rate: %.2f×", ratio)
	for _, st := range []*loadStats{single, many} {
		if len(st.errors) > 0 {
			t.Errorf("%d errors: %q", len(st.errors), st.errors)
		}
	}
	if ratio < 4 {
		t.Errorf("batching does not pay enough: %.2f× the single-client rate, want ≥ 4×", ratio)
	}
}

// loadMessage is a user message of 3 to 12 random words.
func loadMessage(rng *rand.Rand) string {
	var msg strings.Builder
	for range 3 + rng.IntN(10) {
		msg.WriteString(loadWords[rng.IntN(len(loadWords))] + " ")
	}
	return msg.String()
}

// engineAlone is the rate of the engine without HTTP for the same kind of
// requests, submitted back to back by clients goroutines.
func engineAlone(t *testing.T, s *testServer, d time.Duration, maxTokens, clients int) float64 {
	_, tok, tmpl := defaultFiles(t)
	start := time.Now()
	var n atomic.Int64
	var wg sync.WaitGroup
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(c), 1))
			for time.Since(start) < d {
				b, _ := json.Marshal([]map[string]string{{"role": "user", "content": loadMessage(rng)}})
				text, err := tmpl.Render(chatInput(string(b)))
				if err != nil {
					t.Error(err)
					return
				}
				ch, err := s.engine.Submit(context.Background(), engine.Request{Prompt: tok.Encode(text, false), MaxTokens: maxTokens, Logprobs: -1,
					Sampling: engine.Sampling{Temperature: 0.8, TopP: 1}})
				if err != nil {
					t.Error(err)
					return
				}
				for ev := range ch {
					if !ev.Done {
						n.Add(1)
					}
				}
			}
		}()
	}
	wg.Wait()
	return float64(n.Load()) / time.Since(start).Seconds()
}
