package quant

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"sort"
	"strings"
)

// MethodFP is the quant_method this project writes for its floating-point
// formats (FP4, MXFP4, NVFP4, FP8), with "format" naming which.
const MethodFP = "marlin_fp"

// Config is a checkpoint's quantization_config (from config.json).
//
// Read: quant_method "gptq" (bits, group_size with −1 = per-channel,
// desc_act, sym, checkpoint_format "gptq" = v1 or "gptq_v2"); MethodFP
// ("format": "fp4" | "mxfp4" | "nvfp4" | "fp8", group_size); and, for
// checkpoints made by other tools with the same tensor layouts,
// "compressed-tensors" with 8-bit float channel- or tensor-wise weights
// (FP8) and "modelopt" with quant_algo "FP8" or "NVFP4"; and "exl3"
// (exllamav3: bits, head_bits, codebook; each tensor's K comes from its
// trellis shape), with marlin's "logical_shapes" for padded layers.
type Config struct {
	Method           string // quant_method as read
	Format           Format // GPTQ, FP8, FP4, MXFP4, NVFP4 or EXL3
	Bits             int    // GPTQ: 2, 3, 4, 8; FP8 8; FP4 formats 4
	Group            int    // group_size: −1 per-channel (also FP8); MXFP4 32; NVFP4 16
	DescAct          bool   // GPTQ act-order (g_idx permutes groups)
	Sym              bool   // GPTQ symmetric
	CheckpointFormat string // GPTQ: "gptq" (v1, zero points stored as z−1) or "gptq_v2"

	// Dynamic holds per-module overrides of a GPTQ checkpoint, in
	// GPTQModel's "dynamic" convention: a regular expression over the
	// module name ("+:" prefix optional) and the keys it changes (bits,
	// group_size, sym, desc_act). marlin writes one for an output head
	// quantized to other bits than the body.
	Dynamic []DynamicRule

	// EXL3 only:
	AvgBits  float64  // "bits": average bits per weight of the decoder layers (may be fractional)
	HeadBits int      // "head_bits": K of the output head (0: kept in 16 bits)
	Codebook Codebook // "codebook" (informational: each tensor's markers decide)
	// Shapes maps a weight prefix to its logical [Out, In] when the
	// stored EXL3 tensors are padded to multiples of 128 ("logical_shapes",
	// a marlin extension other readers ignore).
	Shapes map[string][2]int
}

// DynamicRule is one per-module override of a GPTQ Config.
type DynamicRule struct {
	Pattern  string
	re       *regexp.Regexp
	Override map[string]any
}

// For returns the configuration of the module named prefix: c, or c with
// the first matching dynamic override applied.
func (c *Config) For(prefix string) (*Config, error) {
	if c == nil || len(c.Dynamic) == 0 {
		return c, nil
	}
	for _, r := range c.Dynamic {
		re := r.re
		if re == nil { // a rule built in code rather than parsed
			var err error
			if re, err = regexp.Compile(strings.TrimPrefix(r.Pattern, "+:")); err != nil {
				return nil, fmt.Errorf("dynamic rule %q: %v", r.Pattern, err)
			}
		}
		if re.MatchString(prefix) {
			m := map[string]any{"bits": float64(c.Bits), "group_size": float64(c.Group), "desc_act": c.DescAct,
				"sym": c.Sym, "checkpoint_format": c.CheckpointFormat}
			for k, v := range r.Override {
				m[k] = v
			}
			o := &Config{Method: c.Method}
			if err := o.parseGPTQ(m); err != nil {
				return nil, fmt.Errorf("%s (dynamic rule %q)", err, r.Pattern)
			}
			return o, nil
		}
	}
	return c, nil
}

// ZeroOffset returns the value LoadWeight adds to stored GPTQ zero points:
// 1 for v1 checkpoints, 0 for gptq_v2.
func (c *Config) ZeroOffset() int {
	if c.CheckpointFormat == "gptq_v2" {
		return 0
	}
	return 1
}

// ParseConfig parses a quantization_config object. raw may also be a whole
// config.json, whose "quantization_config" member is then used. nil, empty
// input, JSON null or a config.json without quantization_config mean "not
// quantized" and return (nil, nil). Unknown methods and parameters this
// package cannot run (bits 5, group size 0, …) are errors.
func ParseConfig(raw []byte) (*Config, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("quantization_config: %w", err)
	}
	if m == nil {
		return nil, nil
	}
	if q, ok := m["quantization_config"]; ok {
		if q == nil {
			return nil, nil
		}
		qm, ok := q.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("quantization_config: not a JSON object")
		}
		m = qm
	} else if _, ok := m["quant_method"]; !ok {
		if _, isModel := m["architectures"]; isModel {
			return nil, nil // a config.json without quantization
		}
		if _, isModel := m["model_type"]; isModel {
			return nil, nil
		}
		return nil, fmt.Errorf("quantization_config: no quant_method")
	}
	method, err := str(m, "quant_method", "")
	if err != nil {
		return nil, err
	}
	c := &Config{Method: method}
	switch strings.ToLower(method) {
	case "gptq":
		return c, c.parseGPTQ(m)
	case MethodFP:
		return c, c.parseFP(m)
	case "compressed-tensors":
		return c, c.parseCompressedTensors(m)
	case "modelopt":
		return c, c.parseModelOpt(m)
	case "exl3":
		return c, c.parseEXL3(m)
	case "":
		return nil, fmt.Errorf("quantization_config: no quant_method")
	}
	return nil, fmt.Errorf("quantization_config: quant_method %q not supported (want gptq, exl3, %s, compressed-tensors FP8 or modelopt FP8/NVFP4)", method, MethodFP)
}

func (c *Config) parseEXL3(m map[string]any) error {
	c.Format, c.Sym = EXL3, true
	if v, ok := m["bits"]; ok && v != nil {
		f, ok := v.(float64)
		if !ok || !(f >= 1 && f <= MaxTrellisBits) {
			return fmt.Errorf("quantization_config: exl3 bits is %v, want a number in [1, %d]", v, MaxTrellisBits)
		}
		c.AvgBits = f
		c.Bits = int(math.Round(f))
	}
	var err error
	if c.HeadBits, err = integer(m, "head_bits", 0); err != nil {
		return err
	}
	if c.HeadBits < 0 || c.HeadBits > MaxTrellisBits {
		return fmt.Errorf("quantization_config: exl3 head_bits %d out of range", c.HeadBits)
	}
	cb, err := str(m, "codebook", "")
	if err != nil {
		return err
	}
	if c.Codebook, err = ParseCodebook(cb); err != nil || !c.Codebook.Stored() {
		return fmt.Errorf("quantization_config: exl3 codebook %q not supported (want 3inst, mcg or mul1)", cb)
	}
	if ls, ok := m["logical_shapes"]; ok && ls != nil {
		lm, ok := ls.(map[string]any)
		if !ok {
			return fmt.Errorf("quantization_config: logical_shapes is not an object")
		}
		c.Shapes = map[string][2]int{}
		for k, v := range lm {
			a, ok := v.([]any)
			if !ok || len(a) != 2 {
				return fmt.Errorf("quantization_config: logical_shapes[%q] is %v, want [Out, In]", k, v)
			}
			var sh [2]int
			for i, x := range a {
				f, ok := x.(float64)
				if !ok || f != math.Trunc(f) || f <= 0 || f > 1<<30 {
					return fmt.Errorf("quantization_config: logical_shapes[%q] is %v, want two positive integers", k, v)
				}
				sh[i] = int(f)
			}
			c.Shapes[k] = sh
		}
	}
	return nil
}

func (c *Config) parseGPTQ(m map[string]any) error {
	c.Format = GPTQ
	var err error
	if c.Bits, err = integer(m, "bits", 0); err != nil {
		return err
	}
	if c.Bits != 2 && c.Bits != 3 && c.Bits != 4 && c.Bits != 8 {
		return fmt.Errorf("quantization_config: gptq bits %d not supported (want 2, 3, 4 or 8)", c.Bits)
	}
	if c.Group, err = integer(m, "group_size", -1); err != nil {
		return err
	}
	if c.Group == 0 || c.Group < -1 {
		return fmt.Errorf("quantization_config: group_size %d (want −1 for per-channel or a positive size)", c.Group)
	}
	if c.DescAct, err = boolean(m, "desc_act", false); err != nil {
		return err
	}
	if c.Sym, err = boolean(m, "sym", true); err != nil {
		return err
	}
	cf, err := str(m, "checkpoint_format", "")
	if err != nil {
		return err
	}
	if cf == "" {
		if cf, err = str(m, "format", "gptq"); err != nil {
			return err
		}
	}
	switch cf {
	case "gptq", "gptq_v2":
		c.CheckpointFormat = cf
	default:
		return fmt.Errorf("quantization_config: checkpoint_format %q not supported (want gptq or gptq_v2)", cf)
	}
	if d, ok := m["dynamic"]; ok && d != nil {
		dm, ok := d.(map[string]any)
		if !ok {
			return fmt.Errorf("quantization_config: dynamic is not an object")
		}
		keys := make([]string, 0, len(dm))
		for k := range dm {
			keys = append(keys, k)
		}
		sort.Strings(keys) // a deterministic order for overlapping rules
		for _, k := range keys {
			if strings.HasPrefix(k, "-:") {
				continue // "not quantized": the tensors themselves say so
			}
			ov, ok := dm[k].(map[string]any)
			if !ok {
				return fmt.Errorf("quantization_config: dynamic[%q] is not an object", k)
			}
			re, err := regexp.Compile(strings.TrimPrefix(k, "+:"))
			if err != nil {
				return fmt.Errorf("quantization_config: dynamic[%q]: %v", k, err)
			}
			c.Dynamic = append(c.Dynamic, DynamicRule{Pattern: k, re: re, Override: ov})
		}
	}
	return nil
}

func (c *Config) parseFP(m map[string]any) error {
	f, err := str(m, "format", "")
	if err != nil {
		return err
	}
	g, err := integer(m, "group_size", 0)
	if err != nil {
		return err
	}
	switch f {
	case "fp4":
		c.Format, c.Bits, c.Group = FP4, 4, g
		if g <= 0 || g%2 != 0 {
			return fmt.Errorf("quantization_config: fp4 group_size %d (want a positive even size)", g)
		}
	case "mxfp4":
		c.Format, c.Bits, c.Group = MXFP4, 4, 32
		if g != 0 && g != 32 {
			return fmt.Errorf("quantization_config: mxfp4 group_size %d (blocks are 32)", g)
		}
	case "nvfp4":
		c.Format, c.Bits, c.Group = NVFP4, 4, 16
		if g != 0 && g != 16 {
			return fmt.Errorf("quantization_config: nvfp4 group_size %d (blocks are 16)", g)
		}
	case "fp8":
		c.Format, c.Bits, c.Group = FP8, 8, -1
		if g != 0 && g != -1 {
			return fmt.Errorf("quantization_config: fp8 group_size %d (fp8 is per-channel)", g)
		}
	default:
		return fmt.Errorf("quantization_config: %s format %q not supported (want fp4, mxfp4, nvfp4 or fp8)", MethodFP, f)
	}
	c.Sym = true
	return nil
}

func (c *Config) parseCompressedTensors(m map[string]any) error {
	groups, _ := m["config_groups"].(map[string]any)
	if len(groups) == 0 {
		return fmt.Errorf("quantization_config: compressed-tensors without config_groups")
	}
	for name, g := range groups {
		gm, _ := g.(map[string]any)
		wts, _ := gm["weights"].(map[string]any)
		if wts == nil {
			return fmt.Errorf("quantization_config: compressed-tensors group %q has no weights scheme", name)
		}
		bits, err := integer(wts, "num_bits", 0)
		if err != nil {
			return err
		}
		typ, _ := wts["type"].(string)
		strategy, _ := wts["strategy"].(string)
		if bits != 8 || typ != "float" || (strategy != "channel" && strategy != "tensor") {
			return fmt.Errorf("quantization_config: compressed-tensors scheme %q (%d-bit %s, strategy %s) not supported; only FP8 channel/tensor weights are", name, bits, typ, strategy)
		}
	}
	c.Format, c.Bits, c.Group, c.Sym = FP8, 8, -1, true
	return nil
}

func (c *Config) parseModelOpt(m map[string]any) error {
	algo, _ := m["quant_algo"].(string)
	if algo == "" {
		if q, ok := m["quantization"].(map[string]any); ok {
			algo, _ = q["quant_algo"].(string)
		}
	}
	switch strings.ToUpper(algo) {
	case "FP8":
		c.Format, c.Bits, c.Group = FP8, 8, -1
	case "NVFP4":
		c.Format, c.Bits, c.Group = NVFP4, 4, 16
	default:
		return fmt.Errorf("quantization_config: modelopt quant_algo %q not supported (want FP8 or NVFP4)", algo)
	}
	c.Sym = true
	return nil
}

// JSON returns the quantization_config to write into config.json for a
// checkpoint of this configuration: the GPTQ keys for GPTQ, MethodFP's
// otherwise.
func (c *Config) JSON() map[string]any {
	if c == nil {
		return nil
	}
	if c.Format == EXL3 {
		m := map[string]any{"quant_method": "exl3", "bits": c.AvgBits, "head_bits": c.HeadBits,
			"codebook": c.Codebook.String(), "out_scales": "auto"}
		if len(c.Shapes) > 0 {
			ls := map[string]any{}
			for k, v := range c.Shapes {
				ls[k] = []int{v[0], v[1]}
			}
			m["logical_shapes"] = ls
		}
		return m
	}
	if c.Format == GPTQ {
		cf := c.CheckpointFormat
		if cf == "" {
			cf = "gptq"
		}
		m := map[string]any{
			"quant_method": "gptq", "bits": c.Bits, "group_size": c.Group,
			"desc_act": c.DescAct, "sym": c.Sym, "checkpoint_format": cf,
		}
		if len(c.Dynamic) > 0 {
			d := map[string]any{}
			for _, r := range c.Dynamic {
				d[r.Pattern] = r.Override
			}
			m["dynamic"] = d
		}
		return m
	}
	m := map[string]any{"quant_method": MethodFP, "format": c.Format.String()}
	switch c.Format {
	case FP8:
		m["group_size"] = -1
	default:
		m["group_size"] = c.Group
	}
	return m
}

// ConfigFor returns the Config describing checkpoints quantized with spec
// (a per-channel GPTQ spec becomes group_size −1).
func ConfigFor(spec Spec) *Config {
	c := &Config{Format: spec.Format, Bits: spec.Bits, Group: spec.Group, Sym: true}
	switch spec.Format {
	case GPTQ:
		c.Method, c.Sym = "gptq", spec.Sym
		c.CheckpointFormat = "gptq"
		if spec.V2 {
			c.CheckpointFormat = "gptq_v2"
		}
		if c.Group <= 0 {
			c.Group = -1
		}
	case FP8:
		c.Method, c.Bits, c.Group = MethodFP, 8, -1
	case MXFP4:
		c.Method, c.Bits, c.Group = MethodFP, 4, 32
	case NVFP4:
		c.Method, c.Bits, c.Group = MethodFP, 4, 16
	case EXL3:
		c.Method, c.Group, c.AvgBits, c.Codebook = "exl3", 0, float64(spec.Bits), spec.Codebook
	default:
		c.Method, c.Bits = MethodFP, 4
	}
	return c
}

func str(m map[string]any, key, def string) (string, error) {
	v, ok := m[key]
	if !ok || v == nil {
		return def, nil
	}
	s, ok := v.(string)
	if !ok {
		return "", fmt.Errorf("quantization_config: %s is %v, want a string", key, v)
	}
	return s, nil
}

func integer(m map[string]any, key string, def int) (int, error) {
	v, ok := m[key]
	if !ok || v == nil {
		if def == 0 && key == "bits" {
			return 0, fmt.Errorf("quantization_config: no %s", key)
		}
		return def, nil
	}
	// a number of parsed JSON, or an int of a rule built in code
	// (quantize.Config)
	f, ok := v.(float64)
	if n, isInt := v.(int); isInt {
		f, ok = float64(n), true
	}
	if !ok || f != float64(int(f)) || f > 1<<30 || f < -(1<<30) {
		return 0, fmt.Errorf("quantization_config: %s is %v, want an integer", key, v)
	}
	return int(f), nil
}

func boolean(m map[string]any, key string, def bool) (bool, error) {
	v, ok := m[key]
	if !ok || v == nil {
		return def, nil
	}
	b, ok := v.(bool)
	if !ok {
		return false, fmt.Errorf("quantization_config: %s is %v, want true or false", key, v)
	}
	return b, nil
}
