package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/marlin-llm/marlin/engine"
)

// job is one API request's generation: its sequences (n per prompt) running
// on the engine, and what the handler has received of them.
type job struct {
	s       *Server
	m       *served
	ctx     context.Context
	start   time.Time
	p       *genParams
	prompts [][]int32
	tools   toolsParam
	call    *callSpec // tool_choice required or named: a forced call
	choices []*choice
	events  chan choiceEvent
	first   bool // a token was received (time to first token recorded)
}

type choiceEvent struct {
	c  *choice
	ev engine.Event
}

// choice is one sequence as the handler sees it.
type choice struct {
	index   int
	prompt  int // index into job.prompts
	dec     *textDecoder
	stops   *engine.StopMatcher // nil without stop strings
	tools   *toolScanner        // nil unless tool calls are parsed
	forced  *strings.Builder    // the raw output of a forced tool call
	stopped bool                // a stop string ended the text
	single  bool                // keep the first tool call only
	ch      <-chan engine.Event

	ids      []int32
	logprobs []engine.Event // token events, when logprobs are asked for
	content  strings.Builder
	calls    []toolCall
	finish   string
	usage    engine.Usage
	last     time.Time // when its last token arrived
}

// seqGuard runs on the engine's goroutine for one sequence: it ends the
// sequence when a stop string is complete, applies the logit bias and
// drives constrained decoding. It sees the same text as the handler's
// choice, so both agree on where a stop string ends the output.
type seqGuard struct {
	dec   *textDecoder
	stops *engine.StopMatcher
	cons  *jsonGuard
	bias  map[int32]float32
}

func (g *seqGuard) mask(logits []float32) {
	for id, b := range g.bias {
		if int(id) < len(logits) {
			logits[id] += b
		}
	}
	if g.cons != nil {
		g.cons.mask(logits)
	}
}

func (g *seqGuard) stop(id int32) bool {
	stop := false
	if g.stops != nil {
		_, stop = g.stops.Push(g.dec.next(id))
	}
	if g.cons != nil && g.cons.accept(id) {
		stop = true
	}
	return stop
}

// submit queues every sequence of the job. On failure it cancels the
// sequences already queued.
func (j *job) submit(cancel context.CancelFunc) *apiError {
	m, p := j.m, j.p
	j.events = make(chan choiceEvent, 16)
	for pi, prompt := range j.prompts {
		room := m.ctxLen - len(prompt)
		if room <= 0 {
			return promptTooLong("prompt", len(prompt), m.ctxLen)
		}
		maxTokens := p.maxTokens
		if maxTokens <= 0 || maxTokens > room {
			maxTokens = room // capped by the context: finish_reason "length"
		}
		for k := range p.n {
			samp := p.sampling
			if samp.HasSeed {
				samp.Seed += uint64(k) // reproducible, yet different choices
			}
			req := engine.Request{Prompt: prompt, MaxTokens: maxTokens, Sampling: samp, Logprobs: p.logprobs}
			if !p.ignoreEOS {
				req.StopIDs = m.StopIDs
			}
			c := &choice{index: pi*p.n + k, prompt: pi, dec: m.newDecoder(j.tools.parse)}
			g := &seqGuard{bias: p.logitBias}
			if j.call != nil {
				c.forced = &strings.Builder{}
				g.cons = newJSONGuard(m.vocabBytes(), maxTokens, j.call)
			} else {
				if len(p.stops) > 0 {
					c.stops = engine.NewStopMatcher(p.stops)
					g.stops, g.dec = engine.NewStopMatcher(p.stops), m.newDecoder(j.tools.parse)
				}
				if p.jsonMode {
					g.cons = newJSONGuard(m.vocabBytes(), maxTokens, nil)
				}
				if j.tools.parse {
					c.tools, c.single = newToolScanner(m.toolSyntax), j.tools.single
				}
			}
			if g.stops != nil || g.cons != nil {
				req.Stop = g.stop
			}
			if g.cons != nil || len(g.bias) > 0 {
				req.Mask = g.mask
			}
			ch, err := m.Engine.Submit(j.ctx, req)
			if err != nil {
				cancel()
				switch {
				case errors.Is(err, engine.ErrBusy):
					return &apiError{Status: http.StatusTooManyRequests, Type: typeRateLimit, Code: "queue_full", RetryAfter: 1,
						Message: "the server is busy: too many requests are waiting; retry later"}
				case errors.Is(err, engine.ErrClosed):
					return &apiError{Status: http.StatusServiceUnavailable, Type: typeUnavailable, Code: "server_shutdown", Message: "the server is shutting down"}
				}
				return badRequest("", "%v", err)
			}
			c.ch = ch
			j.choices = append(j.choices, c)
		}
	}
	for _, c := range j.choices {
		go j.forward(c)
	}
	n := 0
	for _, pr := range j.prompts {
		n += len(pr)
	}
	j.s.metrics.promptTokens.Add(uint64(n))
	return nil
}

// forward passes a sequence's events on to the job's channel until the
// sequence ends or the request is over.
func (j *job) forward(c *choice) {
	for ev := range c.ch {
		select {
		case j.events <- choiceEvent{c, ev}:
		case <-j.ctx.Done():
			return // the engine's channel is buffered for every event: nothing blocks
		}
	}
}

// handlers of a job's events.
type jobHandlers struct {
	// token is called for each generated token with the text it adds to the
	// choice's content (possibly "").
	token func(c *choice, text string, ev engine.Event) error
	// end is called when a choice is finished, with the rest of its content.
	end func(c *choice, text string) error
	// idle is called when nothing happened for a while (streams: a ping).
	idle func() error
}

// run receives the job's events until every choice is done. It returns the
// error that ended it early: a handler's (the client is gone), or the
// request context's cause.
func (j *job) run(h jobHandlers) error {
	left := len(j.choices)
	var tick <-chan time.Time
	if h.idle != nil {
		t := time.NewTicker(15 * time.Second)
		defer t.Stop()
		tick = t.C
	}
	for left > 0 {
		select {
		case ce := <-j.events:
			c := ce.c
			if ce.ev.Done {
				left--
				if err := j.finish(c, ce.ev); err != nil {
					return err
				}
				if err := h.end(c, c.flush()); err != nil {
					return err
				}
				continue
			}
			now := time.Now()
			if !j.first {
				j.first = true
				j.s.metrics.ttft.observe(now.Sub(j.start).Seconds())
			} else if !c.last.IsZero() {
				j.s.metrics.itl.observe(now.Sub(c.last).Seconds())
			}
			c.last = now
			j.s.metrics.generatedTokens.Add(1)
			text := c.push(ce.ev, j.p.logprobs >= 0)
			if err := h.token(c, text, ce.ev); err != nil {
				return err
			}
		case <-j.ctx.Done():
			return context.Cause(j.ctx)
		case <-tick:
			if err := h.idle(); err != nil {
				return err
			}
		}
	}
	return nil
}

// finish records how a sequence ended; an engine failure is an error.
func (j *job) finish(c *choice, ev engine.Event) error {
	c.usage = ev.Usage
	switch ev.Finish {
	case engine.FinishStop:
		c.finish = "stop"
	case engine.FinishLength:
		c.finish = "length"
	case engine.FinishCancelled:
		if err := context.Cause(j.ctx); err != nil {
			return err
		}
		return errShuttingDown // the engine was closed under us
	default:
		j.s.log.Error("generation failed", "err", ev.Err)
		return fmt.Errorf("generation failed: %w", ev.Err)
	}
	return nil
}

// push takes a token and returns the content it adds.
func (c *choice) push(ev engine.Event, logprobs bool) string {
	c.ids = append(c.ids, ev.Token)
	if logprobs {
		c.logprobs = append(c.logprobs, ev)
	}
	piece := c.dec.next(ev.Token)
	if c.forced != nil {
		c.forced.WriteString(piece)
		return ""
	}
	if c.stopped {
		return ""
	}
	if c.stops != nil {
		piece, c.stopped = c.stops.Push(piece)
	}
	if c.tools != nil {
		piece = c.tools.push(piece)
	}
	c.content.WriteString(piece)
	return piece
}

// flush returns the content still held back at the end of the sequence and
// parses tool calls.
func (c *choice) flush() string {
	rest := c.dec.flush()
	if c.forced != nil {
		c.forced.WriteString(rest)
		c.parseForced()
		return ""
	}
	if c.stopped {
		rest = ""
	} else if c.stops != nil {
		var stopped bool
		if rest, stopped = c.stops.Push(rest); !stopped {
			rest += c.stops.Flush()
		}
	}
	if c.tools != nil {
		rest = c.tools.push(rest)
		content, calls, err := c.tools.finish()
		rest += content
		if err == nil && len(calls) > 0 {
			if c.single {
				calls = calls[:1]
			}
			c.calls = calls
			if c.finish == "stop" {
				c.finish = "tool_calls"
			}
		}
	}
	c.content.WriteString(rest)
	return rest
}

// parseForced turns the output of a forced tool call (`NAME", "arguments":
// {...}`) into the call; output cut short stays content.
func (c *choice) parseForced() {
	out := c.forced.String()
	name, rest, ok := strings.Cut(out, `"`)
	if ok {
		if i := strings.IndexByte(rest, '{'); i >= 0 && json.Valid([]byte(rest[i:])) {
			var b strings.Builder
			if err := compactJSON(&b, rest[i:]); err == nil {
				c.calls = []toolCall{{ID: "call_" + randomID(24), Type: "function", Function: toolCallFunction{Name: name, Arguments: b.String()}}}
				c.finish = "tool_calls"
				return
			}
		}
	}
	c.content.WriteString(out)
}

func compactJSON(b *strings.Builder, s string) error {
	var buf bytes.Buffer
	if err := json.Compact(&buf, []byte(s)); err != nil {
		return err
	}
	b.Write(buf.Bytes())
	return nil
}

// usage sums the job's usage: the prompts once, the completions of every
// choice.
func (j *job) usage() usage {
	var u usage
	for _, pr := range j.prompts {
		u.PromptTokens += len(pr)
	}
	for _, c := range j.choices {
		u.CompletionTokens += c.usage.CompletionTokens
	}
	u.TotalTokens = u.PromptTokens + u.CompletionTokens
	return u
}

// cutShort maps the error that ended a job early to the answer: nil when
// the client is gone (nobody to answer).
func cutShort(err error, timeout time.Duration) *apiError {
	switch {
	case errors.Is(err, errShuttingDown):
		return &apiError{Status: http.StatusServiceUnavailable, Type: typeUnavailable, Code: "server_shutdown",
			Message: "the server is shutting down; the response was cut short"}
	case errors.Is(err, errDeadline):
		return &apiError{Status: http.StatusGatewayTimeout, Type: typeTimeout, Code: "request_timeout",
			Message: fmt.Sprintf("the request ran past the server's deadline of %v", timeout)}
	case errors.Is(err, context.Canceled):
		return nil
	}
	var ae *apiError
	if errors.As(err, &ae) {
		return ae
	}
	if strings.HasPrefix(err.Error(), "generation failed") {
		return &apiError{Status: http.StatusInternalServerError, Type: typeServer, Message: err.Error()}
	}
	return nil // a write error: the client is gone
}

// requestContext derives a request's context: cancelled when the client
// goes away, when the deadline passes (cause errDeadline) and when
// Shutdown's grace period is over (cause errShuttingDown).
func (s *Server) requestContext(r *http.Request) (context.Context, context.CancelFunc) {
	ctx, cancelCause := context.WithCancelCause(r.Context())
	stopWatch := context.AfterFunc(s.stopCtx, func() { cancelCause(errShuttingDown) })
	ctx, cancelTimeout := context.WithTimeoutCause(ctx, s.opts.RequestTimeout, errDeadline)
	return ctx, func() {
		cancelTimeout()
		stopWatch()
		cancelCause(context.Canceled)
	}
}

// logprobsEntry builds a chat logprobs entry for a token event.
func (m *served) logprobsEntry(ev engine.Event) tokenLogprob {
	e := tokenLogprob{Token: m.tokenText(ev.Token), Logprob: clampLogprob(ev.Logprob), Bytes: m.tokenBytes(ev.Token), TopLogprobs: []topLogprob{}}
	for _, t := range ev.Top {
		e.TopLogprobs = append(e.TopLogprobs, topLogprob{Token: m.tokenText(t.ID), Logprob: clampLogprob(t.Logprob), Bytes: m.tokenBytes(t.ID)})
	}
	return e
}

// tokenText is a token as logprobs show it: its text, special tokens by
// name.
func (m *served) tokenText(id int32) string {
	if m.Tokenizer.IsSpecial(id) {
		return m.Tokenizer.Token(id)
	}
	return string(m.Tokenizer.TokenBytes(id))
}

func (m *served) tokenBytes(id int32) []int {
	b := []byte(m.tokenText(id))
	out := make([]int, len(b))
	for i, x := range b {
		out[i] = int(x)
	}
	return out
}
