package server

import (
	"bytes"
	"fmt"
	"math"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// metrics are the counters /metrics exposes in Prometheus' text format.
type metrics struct {
	mu       sync.Mutex
	requests map[requestKey]uint64

	promptTokens    atomic.Uint64
	generatedTokens atomic.Uint64
	inFlight        atomic.Int64
	ttft            *histogram // seconds from request to first token
	itl             *histogram // seconds between two tokens of a sequence
	duration        *histogram // seconds per generation request
}

type requestKey struct {
	endpoint string
	status   int
}

func newMetrics() *metrics {
	return &metrics{
		requests: map[requestKey]uint64{},
		ttft:     newHistogram(0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80),
		itl:      newHistogram(0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1, 2.5),
		duration: newHistogram(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600),
	}
}

func (m *metrics) request(endpoint string, status int) {
	m.mu.Lock()
	m.requests[requestKey{endpoint, status}]++
	m.mu.Unlock()
}

// histogram is a Prometheus histogram with fixed upper bounds; Observe is
// lock-free.
type histogram struct {
	bounds []float64
	counts []atomic.Uint64 // per bucket (not cumulative), last is +Inf
	sum    atomic.Uint64   // float64 bits
	count  atomic.Uint64
}

func newHistogram(bounds ...float64) *histogram {
	return &histogram{bounds: bounds, counts: make([]atomic.Uint64, len(bounds)+1)}
}

func (h *histogram) observe(v float64) {
	i := sort.SearchFloat64s(h.bounds, v) // first bound ≥ v
	h.counts[i].Add(1)
	h.count.Add(1)
	for {
		old := h.sum.Load()
		if h.sum.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+v)) {
			return
		}
	}
}

func (h *histogram) observeSince(t time.Time) { h.observe(time.Since(t).Seconds()) }

func (h *histogram) write(b *bytes.Buffer, name, help string) {
	fmt.Fprintf(b, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name)
	var cum uint64
	for i := range h.counts {
		cum += h.counts[i].Load()
		le := "+Inf"
		if i < len(h.bounds) {
			le = formatFloat(h.bounds[i])
		}
		fmt.Fprintf(b, "%s_bucket{le=%q} %d\n", name, le, cum)
	}
	fmt.Fprintf(b, "%s_sum %s\n%s_count %d\n", name, formatFloat(math.Float64frombits(h.sum.Load())), name, h.count.Load())
}

func formatFloat(v float64) string {
	switch {
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

func writeMetric(b *bytes.Buffer, name, typ, help string, value float64) {
	fmt.Fprintf(b, "# HELP %s %s\n# TYPE %s %s\n%s %s\n", name, help, name, typ, name, formatFloat(value))
}

// escapeLabel escapes a Prometheus label value.
func escapeLabel(s string) string {
	var b bytes.Buffer
	for _, r := range s {
		switch r {
		case '\\':
			b.WriteString(`\\`)
		case '"':
			b.WriteString(`\"`)
		case '\n':
			b.WriteString(`\n`)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// handleMetrics writes every metric in the Prometheus text format 0.0.4.
func (s *Server) handleMetrics(w http.ResponseWriter, r *http.Request) {
	m := s.metrics
	var b bytes.Buffer

	m.mu.Lock()
	keys := make([]requestKey, 0, len(m.requests))
	for k := range m.requests {
		keys = append(keys, k)
	}
	counts := make([]uint64, len(keys))
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].endpoint != keys[j].endpoint {
			return keys[i].endpoint < keys[j].endpoint
		}
		return keys[i].status < keys[j].status
	})
	for i, k := range keys {
		counts[i] = m.requests[k]
	}
	m.mu.Unlock()
	b.WriteString("# HELP marlin_requests_total HTTP requests by endpoint and status code.\n# TYPE marlin_requests_total counter\n")
	for i, k := range keys {
		fmt.Fprintf(&b, "marlin_requests_total{endpoint=\"%s\",status=\"%d\"} %d\n", escapeLabel(k.endpoint), k.status, counts[i])
	}
	writeMetric(&b, "marlin_requests_in_flight", "gauge", "HTTP requests being served.", float64(m.inFlight.Load()))
	writeMetric(&b, "marlin_prompt_tokens_total", "counter", "Prompt tokens of the generation requests (as reported in usage).", float64(m.promptTokens.Load()))
	writeMetric(&b, "marlin_generation_tokens_total", "counter", "Tokens generated and sent to clients.", float64(m.generatedTokens.Load()))
	m.ttft.write(&b, "marlin_time_to_first_token_seconds", "Time from the request's arrival to its first generated token.")
	m.itl.write(&b, "marlin_inter_token_latency_seconds", "Time between consecutive tokens of a sequence.")
	m.duration.write(&b, "marlin_request_duration_seconds", "Time to serve a generation request, from arrival to the last byte.")

	loaded := 0.0
	if md := s.model.Load(); md != nil {
		loaded = 1
		st := md.Engine.Stats()
		fmt.Fprintf(&b, "# HELP marlin_model_info The served model.\n# TYPE marlin_model_info gauge\nmarlin_model_info{model=\"%s\",context_length=\"%d\"} 1\n", escapeLabel(md.Name), md.ctxLen)
		writeMetric(&b, "marlin_queue_depth", "gauge", "Sequences waiting for the scheduler (not yet running).", float64(st.Waiting))
		writeMetric(&b, "marlin_running_sequences", "gauge", "Sequences in the running batch.", float64(st.Running))
		writeMetric(&b, "marlin_kv_cache_blocks_used", "gauge", "KV cache blocks held by sequences.", float64(st.KVBlocksUsed))
		writeMetric(&b, "marlin_kv_cache_blocks_total", "gauge", "KV cache blocks in the pool.", float64(st.KVBlocks))
		writeMetric(&b, "marlin_kv_cache_block_size_tokens", "gauge", "Tokens per KV cache block.", float64(st.BlockSize))
		writeMetric(&b, "marlin_preemptions_total", "counter", "Sequences preempted (cache dropped, recomputed later) for lack of KV cache blocks.", float64(st.Preemptions))
		writeMetric(&b, "marlin_engine_steps_total", "counter", "Forward passes the scheduler ran.", float64(st.Steps))
	}
	writeMetric(&b, "marlin_model_loaded", "gauge", "1 once the model is loaded and requests are served.", loaded)

	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	w.Write(b.Bytes())
}
