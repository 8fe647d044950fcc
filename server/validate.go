package server

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"

	"github.com/marlin-llm/marlin/engine"
)

// Limits on request fields (OpenAI's where it has them).
const (
	maxStops        = 16  // stop strings per request
	maxStopLen      = 256 // bytes per stop string
	maxTopLogprobs  = 20
	maxLogitBias    = 1024 // entries
	maxLogitBiasAbs = 100
)

// samplingFields are the generation parameters chat and completions share.
// Optional numbers are pointers: absent and null mean the default.
type samplingFields struct {
	Temperature      *float64           `json:"temperature"`
	TopP             *float64           `json:"top_p"`
	PresencePenalty  *float64           `json:"presence_penalty"`
	FrequencyPenalty *float64           `json:"frequency_penalty"`
	Seed             *int64             `json:"seed"`
	Stop             json.RawMessage    `json:"stop"`
	N                *int               `json:"n"`
	LogitBias        map[string]float64 `json:"logit_bias"`
	Stream           bool               `json:"stream"`
	StreamOptions    *streamOptions     `json:"stream_options"`
	User             string             `json:"user"`

	// Extensions (as in vLLM).
	TopK              *int     `json:"top_k"`
	MinP              *float64 `json:"min_p"`
	RepetitionPenalty *float64 `json:"repetition_penalty"`
	IgnoreEOS         bool     `json:"ignore_eos"`
	ReturnTokenIDs    bool     `json:"return_token_ids"`
}

type streamOptions struct {
	IncludeUsage bool `json:"include_usage"`
}

// genParams is a validated generation request, ready for the engine.
type genParams struct {
	n            int
	maxTokens    int // 0: until the context is full
	sampling     engine.Sampling
	stops        []string
	logprobs     int // −1: none
	logitBias    map[int32]float32
	ignoreEOS    bool
	jsonMode     bool
	stream       bool
	includeUsage bool
	tokenIDs     bool
}

// sampling validates the shared fields into p.
func (f *samplingFields) validate(p *genParams, vocab int, maxSeqs int) *apiError {
	s := engine.Sampling{Temperature: 1, TopP: 1}
	if v := f.Temperature; v != nil {
		if *v < 0 || *v > 2 {
			return badRequest("temperature", "temperature %g is out of range: it must be between 0 and 2", *v)
		}
		s.Temperature = float32(*v)
	}
	if v := f.TopP; v != nil {
		if *v < 0 || *v > 1 {
			return badRequest("top_p", "top_p %g is out of range: it must be between 0 and 1", *v)
		}
		s.TopP = float32(*v)
		if *v == 0 { // only the most likely token, as OpenAI defines it
			s.TopK, s.TopP = 1, 1
		}
	}
	if v := f.TopK; v != nil {
		switch {
		case *v == -1: // vLLM's "off"
		case *v < 0:
			return badRequest("top_k", "top_k %d is out of range: it must be ≥ 0 (0 or -1: off)", *v)
		case s.TopK == 0 || *v < s.TopK:
			s.TopK = *v
		}
	}
	if v := f.MinP; v != nil {
		if *v < 0 || *v > 1 {
			return badRequest("min_p", "min_p %g is out of range: it must be between 0 and 1", *v)
		}
		s.MinP = float32(*v)
	}
	if v := f.RepetitionPenalty; v != nil {
		if *v <= 0 || *v > 10 {
			return badRequest("repetition_penalty", "repetition_penalty %g is out of range: it must be in (0, 10]", *v)
		}
		s.RepetitionPenalty = float32(*v)
	}
	for _, pen := range []struct {
		name string
		v    *float64
		dst  *float32
	}{{"presence_penalty", f.PresencePenalty, &s.PresencePenalty}, {"frequency_penalty", f.FrequencyPenalty, &s.FrequencyPenalty}} {
		if pen.v == nil {
			continue
		}
		if *pen.v < -2 || *pen.v > 2 {
			return badRequest(pen.name, "%s %g is out of range: it must be between -2 and 2", pen.name, *pen.v)
		}
		*pen.dst = float32(*pen.v)
	}
	if f.Seed != nil {
		s.Seed, s.HasSeed = uint64(*f.Seed), true
	}
	if err := s.Validate(); err != nil {
		return badRequest("", "%v", err)
	}
	p.sampling = s

	p.n = 1
	if f.N != nil {
		if *f.N < 1 || *f.N > maxSeqs {
			return badRequest("n", "n %d is out of range: it must be between 1 and %d", *f.N, maxSeqs)
		}
		p.n = *f.N
	}
	stops, err := parseStop(f.Stop)
	if err != nil {
		return err
	}
	p.stops = stops
	if len(f.LogitBias) > maxLogitBias {
		return badRequest("logit_bias", "logit_bias has %d entries; at most %d are allowed", len(f.LogitBias), maxLogitBias)
	}
	for k, v := range f.LogitBias {
		id, err := strconv.ParseInt(k, 10, 32)
		if err != nil || id < 0 || int(id) >= vocab {
			return badRequest("logit_bias", "logit_bias key %q is not a token id of this model (0 to %d)", k, vocab-1)
		}
		if v < -maxLogitBiasAbs || v > maxLogitBiasAbs {
			return badRequest("logit_bias", "logit_bias value %g for token %d is out of range: it must be between -100 and 100", v, id)
		}
		if p.logitBias == nil {
			p.logitBias = map[int32]float32{}
		}
		p.logitBias[int32(id)] = float32(v)
	}
	p.stream = f.Stream
	if f.StreamOptions != nil {
		if !f.Stream {
			return badRequest("stream_options", "stream_options is only allowed when stream is true")
		}
		p.includeUsage = f.StreamOptions.IncludeUsage
	}
	p.ignoreEOS = f.IgnoreEOS
	p.tokenIDs = f.ReturnTokenIDs
	p.logprobs = -1
	return nil
}

// parseStop reads stop: null, a string or an array of strings.
func parseStop(raw json.RawMessage) ([]string, *apiError) {
	var stops []string
	switch rawKind(raw) {
	case "", "null":
		return nil, nil
	case "string":
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, badRequest("stop", "stop: %v", err)
		}
		stops = []string{s}
	case "array":
		var list []json.RawMessage
		if err := json.Unmarshal(raw, &list); err != nil {
			return nil, badRequest("stop", "stop: %v", err)
		}
		for i, item := range list {
			var s string
			if rawKind(item) != "string" || json.Unmarshal(item, &s) != nil {
				return nil, badRequest("stop", "stop[%d]: expected a string, got %s", i, article(rawKind(item)))
			}
			stops = append(stops, s)
		}
	default:
		return nil, badRequest("stop", "stop: expected a string or an array of strings, got %s", article(rawKind(raw)))
	}
	if len(stops) > maxStops {
		return nil, badRequest("stop", "stop has %d strings; at most %d are allowed", len(stops), maxStops)
	}
	out := stops[:0]
	for i, s := range stops {
		if len(s) > maxStopLen {
			return nil, badRequest("stop", "stop[%d] is %d bytes long; at most %d are allowed", i, len(s), maxStopLen)
		}
		if s != "" {
			out = append(out, s)
		}
	}
	return out, nil
}

// maxTokensField validates an optional max_tokens-like field: nil keeps def.
func maxTokensField(name string, v *int, def int) (int, *apiError) {
	if v == nil {
		return def, nil
	}
	if *v < 1 {
		return 0, badRequest(name, "%s %d is out of range: it must be at least 1", name, *v)
	}
	return *v, nil
}

// clampLogprob keeps log-probabilities JSON-encodable: −Inf (a token the
// sampler could not pick) becomes −9999, as OpenAI reports it.
func clampLogprob(v float32) float64 {
	if math.IsInf(float64(v), -1) || math.IsNaN(float64(v)) || v < -9999 {
		return -9999
	}
	return float64(v)
}

// promptTooLong is the 400 for a prompt that leaves no room to generate.
func promptTooLong(param string, n, ctx int) *apiError {
	e := badRequest(param, "the prompt is %d tokens long, but the model's context is %d tokens, which leaves no room to generate; shorten the prompt", n, ctx)
	e.Code = "context_length_exceeded"
	return e
}

func plural(n int, word string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, word)
	}
	return fmt.Sprintf("%d %ss", n, word)
}
