package hf

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strings"
)

// Rope is a model's rotary position embedding, merged from the transformers 4
// keys (rope_theta + rope_scaling) and the transformers 5 rope_parameters
// dict, with the defaults transformers applies.
type Rope struct {
	// Type is "default", "linear", "dynamic", "yarn", "longrope", "llama3"
	// or "proportional".
	Type string
	// Theta is the base: rope_parameters.rope_theta, else rope_theta, else
	// the class default (1e6 for Mixtral, 1e4 otherwise).
	Theta float64
	// PartialRotaryFactor is the fraction of each head that is rotated (1
	// when absent).
	PartialRotaryFactor float64
	// Factor is the context scaling factor (1 when absent).
	Factor float64
	// OriginalMaxPositionEmbeddings is the pre-extension context length of
	// llama3, yarn and longrope: a top-level original_max_position_embeddings
	// first (as for Phi-3), then the rope dict's, else max_position_embeddings
	// as transformers 5 does. 0 for the other types.
	OriginalMaxPositionEmbeddings int
	// OriginalMaxExplicit reports whether OriginalMaxPositionEmbeddings was
	// in the file rather than defaulted.
	OriginalMaxExplicit bool
	// Llama 3.
	LowFreqFactor, HighFreqFactor float64
	// YaRN: BetaFast and BetaSlow default to 32 and 1; MScale and
	// MScaleAllDim (DeepSeek) are 0 when absent.
	BetaFast, BetaSlow   float64
	MScale, MScaleAllDim float64
	Truncate             *bool
	// AttentionFactor scales attention logits (yarn, longrope); nil when
	// absent, in which case the type's formula derives it.
	AttentionFactor *float64
	// LongRoPE per-dimension factors.
	ShortFactor, LongFactor []float64
}

// String is a one-line summary for people: the type, the base and the
// parameters the type uses (those left at their defaults omitted).
func (r Rope) String() string {
	g := func(v float64) string { return fmt.Sprint(v) }
	parts := []string{r.Type, "theta " + g(r.Theta)}
	if r.PartialRotaryFactor != 1 {
		parts = append(parts, "partial "+g(r.PartialRotaryFactor))
	}
	if r.Factor != 1 {
		parts = append(parts, "factor "+g(r.Factor))
	}
	if r.OriginalMaxPositionEmbeddings != 0 {
		parts = append(parts, fmt.Sprintf("original context %d", r.OriginalMaxPositionEmbeddings))
	}
	switch r.Type {
	case "llama3":
		parts = append(parts, "low/high frequency factors "+g(r.LowFreqFactor)+"/"+g(r.HighFreqFactor))
	case "yarn":
		parts = append(parts, "beta fast/slow "+g(r.BetaFast)+"/"+g(r.BetaSlow))
		if r.MScale != 0 || r.MScaleAllDim != 0 {
			parts = append(parts, "mscale "+g(r.MScale)+"/"+g(r.MScaleAllDim))
		}
	}
	if r.AttentionFactor != nil {
		parts = append(parts, "attention factor "+g(*r.AttentionFactor))
	}
	if r.Truncate != nil && !*r.Truncate {
		parts = append(parts, "no truncation")
	}
	if len(r.ShortFactor) > 0 {
		parts = append(parts, fmt.Sprintf("%d short and %d long factors", len(r.ShortFactor), len(r.LongFactor)))
	}
	return strings.Join(parts, ", ")
}

var ropeTypes = map[string]bool{
	"default": true, "linear": true, "dynamic": true, "yarn": true,
	"longrope": true, "llama3": true, "proportional": true,
}

// layerTypeLabels are the rope_parameters keys that nest parameters by
// attention layer type.
var layerTypeLabels = []string{"full_attention", "sliding_attention", "chunked_attention", "linear_attention"}

// Rope merges the config's RoPE settings into one Rope. It is an error when
// the rope type is unknown, a required parameter is missing or a value has
// the wrong type, or when the parameters are given per layer type (use
// RopeFor then).
func (c *Config) Rope() (Rope, error) {
	params, source, err := c.ropeDict()
	if err != nil {
		return Rope{}, err
	}
	if nested := c.nestedRopeKeys(params); len(nested) > 0 {
		return Rope{}, fmt.Errorf("hf: config: %s is given per layer type (%s): use RopeFor", source, strings.Join(nested, ", "))
	}
	return c.rope(params, source)
}

// RopeFor returns the RoPE of layers of the given type ("full_attention",
// "sliding_attention", ...) when rope_parameters is nested by layer type, and
// the same as Rope otherwise.
func (c *Config) RopeFor(layerType string) (Rope, error) {
	params, source, err := c.ropeDict()
	if err != nil {
		return Rope{}, err
	}
	if len(c.nestedRopeKeys(params)) == 0 {
		return c.rope(params, source)
	}
	raw, ok := params[layerType]
	if !ok || isNull(raw) {
		return Rope{}, fmt.Errorf("hf: config: %s has no entry for layer type %q", source, layerType)
	}
	var sub map[string]json.RawMessage
	if err := json.Unmarshal(raw, &sub); err != nil || sub == nil {
		return Rope{}, fmt.Errorf("hf: config: field %q: want an object, got %s", source+"."+layerType, describe(raw))
	}
	return c.rope(sub, source+"."+layerType)
}

// ropeDict picks the rope dict as transformers does: a non-empty
// rope_scaling wins over rope_parameters.
func (c *Config) ropeDict() (map[string]json.RawMessage, string, error) {
	raw, source := c.RopeScaling, "rope_scaling"
	if isEmptyObject(raw) {
		raw, source = c.RopeParameters, "rope_parameters"
	}
	if raw == nil {
		return map[string]json.RawMessage{}, source, nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, "", fmt.Errorf("hf: config: field %q: want an object, got %s", source, describe(raw))
	}
	if m == nil {
		m = map[string]json.RawMessage{}
	}
	return m, source, nil
}

func isEmptyObject(raw json.RawMessage) bool {
	if raw == nil {
		return true
	}
	var m map[string]json.RawMessage
	return json.Unmarshal(raw, &m) == nil && len(m) == 0
}

// nestedRopeKeys returns the keys of params that are layer types holding an
// object (or null), sorted.
func (c *Config) nestedRopeKeys(params map[string]json.RawMessage) []string {
	labels := append([]string(nil), layerTypeLabels...)
	if lt, ok := c.Raw["layer_types"]; ok {
		var declared []string
		if json.Unmarshal(lt, &declared) == nil {
			labels = append(labels, declared...)
		}
	}
	var keys []string
	for _, l := range labels {
		if v, ok := params[l]; ok && !contains(keys, l) {
			if t := strings.TrimSpace(string(v)); t == "null" || strings.HasPrefix(t, "{") {
				keys = append(keys, l)
			}
		}
	}
	sort.Strings(keys)
	return keys
}

func contains(s []string, x string) bool {
	for _, v := range s {
		if v == x {
			return true
		}
	}
	return false
}

// rope builds a Rope from one flat parameter dict.
func (c *Config) rope(params map[string]json.RawMessage, source string) (Rope, error) {
	f := &fields{raw: params, prefix: source + "."}
	r := Rope{Factor: 1, PartialRotaryFactor: 1}

	r.Type = f.string("rope_type")
	if r.Type == "" {
		r.Type = f.string("type")
	}
	if r.Type == "" {
		r.Type = "default"
	}
	if f.err != nil {
		return Rope{}, fmt.Errorf("hf: config: %w", f.err)
	}
	if !ropeTypes[r.Type] {
		known := make([]string, 0, len(ropeTypes))
		for k := range ropeTypes {
			known = append(known, k)
		}
		sort.Strings(known)
		return Rope{}, fmt.Errorf("hf: config: %s: unknown rope type %q (known: %s)", source, r.Type, strings.Join(known, ", "))
	}

	switch {
	case f.get("rope_theta") != nil:
		r.Theta = *orZero(f.floatPtr("rope_theta", true))
	case c.RopeTheta != nil:
		r.Theta = *c.RopeTheta
	case c.ModelType == "mixtral":
		r.Theta = 1e6
	default:
		r.Theta = 1e4
	}
	if p := f.floatPtr("partial_rotary_factor", true); p != nil {
		r.PartialRotaryFactor = *p
	} else if c.PartialRotaryFactor != nil {
		r.PartialRotaryFactor = *c.PartialRotaryFactor
	}

	required := map[string][]string{
		"linear":   {"factor"},
		"dynamic":  {"factor"},
		"yarn":     {"factor"},
		"llama3":   {"factor", "low_freq_factor", "high_freq_factor"},
		"longrope": {"short_factor", "long_factor"},
	}[r.Type]
	for _, key := range required {
		if f.get(key) == nil {
			return Rope{}, fmt.Errorf("hf: config: %s: rope type %q needs %q", source, r.Type, key)
		}
	}
	if p := f.floatPtr("factor", true); p != nil {
		r.Factor = *p
	}
	if p := f.floatPtr("low_freq_factor", true); p != nil {
		r.LowFreqFactor = *p
	}
	if p := f.floatPtr("high_freq_factor", true); p != nil {
		r.HighFreqFactor = *p
	}
	r.BetaFast, r.BetaSlow = 32, 1
	if p := f.floatPtr("beta_fast", false); p != nil && *p != 0 {
		r.BetaFast = *p
	}
	if p := f.floatPtr("beta_slow", false); p != nil && *p != 0 {
		r.BetaSlow = *p
	}
	if p := f.floatPtr("mscale", false); p != nil {
		r.MScale = *p
	}
	if p := f.floatPtr("mscale_all_dim", false); p != nil {
		r.MScaleAllDim = *p
	}
	r.Truncate = f.boolPtr("truncate")
	r.AttentionFactor = f.floatPtr("attention_factor", true)
	r.ShortFactor = f.floats("short_factor")
	r.LongFactor = f.floats("long_factor")

	switch r.Type {
	case "llama3", "yarn", "longrope":
		tf := &fields{raw: c.Raw}
		top := tf.intPtr("original_max_position_embeddings", true)
		if tf.err != nil {
			return Rope{}, fmt.Errorf("hf: config: %w", tf.err)
		}
		if p := f.intPtr("original_max_position_embeddings", true); top == nil && p != nil {
			top = p
		}
		if top != nil {
			r.OriginalMaxPositionEmbeddings, r.OriginalMaxExplicit = *top, true
		} else {
			r.OriginalMaxPositionEmbeddings = c.MaxPositionEmbeddings
		}
	}
	if f.err != nil {
		return Rope{}, fmt.Errorf("hf: config: %w", f.err)
	}
	if !(r.Theta > 0) || math.IsInf(r.Theta, 0) {
		return Rope{}, fmt.Errorf("hf: config: %s: rope_theta must be positive, got %g", source, r.Theta)
	}
	if !(r.Factor > 0) {
		return Rope{}, fmt.Errorf("hf: config: %s: factor must be positive, got %g", source, r.Factor)
	}
	if !(r.PartialRotaryFactor > 0 && r.PartialRotaryFactor <= 1) {
		return Rope{}, fmt.Errorf("hf: config: %s: partial_rotary_factor must be in (0, 1], got %g", source, r.PartialRotaryFactor)
	}
	if r.Type == "llama3" && !(r.HighFreqFactor > r.LowFreqFactor) {
		return Rope{}, fmt.Errorf("hf: config: %s: high_freq_factor (%g) must exceed low_freq_factor (%g)", source, r.HighFreqFactor, r.LowFreqFactor)
	}
	return r, nil
}

func orZero(p *float64) *float64 {
	if p == nil {
		return new(float64)
	}
	return p
}
