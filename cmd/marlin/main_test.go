package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/marlin-llm/marlin/backend"
	"github.com/marlin-llm/marlin/backend/cpu"
	"github.com/marlin-llm/marlin/dtype"
	"github.com/marlin-llm/marlin/internal/fixture"
)

// capture runs the command line args and returns its stdout and exit code.
func capture(t *testing.T, args ...string) (string, int) {
	t.Helper()
	var code int
	out := redirect(t, &os.Stdout, func() { code = mainErr(args) })
	return out, code
}

// captureStderr runs the CLI with args like capture and returns what it
// wrote to standard error, and its exit code.
func captureStderr(t *testing.T, args ...string) (string, int) {
	t.Helper()
	var code int
	msg := redirect(t, &os.Stderr, func() { _, code = capture(t, args...) })
	return msg, code
}

// redirect runs run with *f replaced by a pipe and returns what was
// written to it.
func redirect(t *testing.T, f **os.File, run func()) string {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	old := *f
	*f = w
	done := make(chan []byte)
	go func() { b, _ := io.ReadAll(r); done <- b }()
	run()
	w.Close()
	*f = old
	return string(<-done)
}

func ids(v []int32) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = fmt.Sprint(x)
	}
	return strings.Join(s, ",")
}

// TestFixturesThroughCLI runs `marlin logits --json` and `marlin run --ids
// ... -n 12 --temperature 0 --ignore-eos --json` on every transformers
// fixture: logits within 1e-4 × max|logit| at every position, identical
// greedy continuation.
func TestFixturesThroughCLI(t *testing.T) {
	dirs, err := fixture.Dirs("../../testdata")
	if err != nil {
		t.Fatal(err)
	}
	for _, dir := range dirs {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			ref, err := fixture.Load(dir)
			if err != nil {
				t.Fatal(err)
			}
			out, code := capture(t, "logits", dir, "--ids", ids(ref.IDs), "--json")
			if code != 0 {
				t.Fatalf("logits exited %d", code)
			}
			var got struct {
				IDs    []int32     `json:"ids"`
				Logits [][]float64 `json:"logits"`
			}
			if err := json.Unmarshal([]byte(out), &got); err != nil {
				t.Fatal(err)
			}
			for p := range ref.Logits {
				var m, d float64
				for j, v := range ref.Logits[p] {
					m = math.Max(m, math.Abs(v))
					d = math.Max(d, math.Abs(got.Logits[p][j]-v))
				}
				if d > 1e-4*m {
					t.Errorf("position %d: max |Δ| %.3g > 1e-4 × %.3g", p, d, m)
				}
			}
			// (a float32 cache: a GPU's default 16-bit one could turn a near tie)
			out, code = capture(t, "run", dir, "--ids", ids(ref.IDs), "-n", "12", "--temperature", "0", "--ignore-eos", "--kv-type", "f32", "--json")
			if code != 0 {
				t.Fatalf("run exited %d", code)
			}
			var gen struct{ IDs []int32 }
			if err := json.Unmarshal([]byte(out), &gen); err != nil {
				t.Fatalf("%v: %q", err, out)
			}
			if ids(gen.IDs) != ids(ref.Greedy) {
				t.Errorf("greedy %v, transformers %v", gen.IDs, ref.Greedy)
			}
		})
	}
}

// TestRunWholeContext: -n 0 generates until the model's context is full
// (it once sized the engine's context for one token).
func TestRunWholeContext(t *testing.T) {
	fixture := "../../testdata/models/llama-mqa-f32-bias"
	out, code := capture(t, "run", fixture, "--ids", "1,2,3", "-n", "0", "--temperature", "0", "--ignore-eos", "--json")
	if code != 0 {
		t.Fatalf("run exited %d: %s", code, out)
	}
	var gen struct{ IDs []int32 }
	if err := json.Unmarshal([]byte(out), &gen); err != nil {
		t.Fatalf("%v: %q", err, out)
	}
	cfg, err := os.ReadFile(fixture + "/config.json")
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		MaxPos int `json:"max_position_embeddings"`
	}
	if err := json.Unmarshal(cfg, &c); err != nil {
		t.Fatal(err)
	}
	if want := c.MaxPos - 3; len(gen.IDs) != want {
		t.Errorf("-n 0 generated %d tokens, want %d (context %d, prompt 3)", len(gen.IDs), want, c.MaxPos)
	}
}

// TestCLIErrors: bad invocations and inputs exit non-zero with a message.
func TestCLIErrors(t *testing.T) {
	fixture := "../../testdata/models/llama-mqa-f32-bias"
	for _, args := range [][]string{
		{"logits", fixture},                                  // no --ids
		{"logits", fixture, "--ids", "1,x"},                  // bad id
		{"logits", fixture, "--ids", "99999"},                // outside the vocabulary
		{"logits", t.TempDir(), "--ids", "1"},                // not a model
		{"logits", fixture, "--ids", "1,2", "--decode", "3"}, // more steps than ids
		{"logits", fixture, "--ids", "1,2", "--last", "-1"},
		{"run", fixture, "--ids", "1", "--device", "tpu"},
		{"run", fixture, "--ids", "1", "--device", "cuda"},
		{"quantize", fixture, t.TempDir(), "--format", "int5"},
		{"quantize", fixture, t.TempDir(), "--format", "mxfp4", "--group", "64"}, // its blocks are 32
		{"quantize", fixture, t.TempDir(), "--fp-targets", "on"},                 // rtn has no calibration
		{"quantize", fixture, t.TempDir(), "--method", "gptq", "--fp-targets", "yes"},
		{"nosuchcommand"},
		{"perplexity", fixture},
		{"serve", fixture, "--port", "0"}, // no tokenizer: the load fails and serve says so
		{"run", fixture, "--ids", "1", "--kv-type", "f8"},
	} {
		if msg, code := captureStderr(t, args...); code == 0 || msg == "" {
			t.Errorf("%v: exit %d, stderr %q", args, code, msg)
		}
	}
}

// TestQuantizeOwnBlocks: mxfp4, nvfp4 and fp8 need no --group (the
// default 128 is the integer formats'); the checkpoint names the format.
func TestQuantizeOwnBlocks(t *testing.T) {
	fixture := "../../testdata/models/llama-gqa-bf16-tied-llama3rope"
	for _, format := range []string{"mxfp4", "nvfp4", "fp8"} {
		out := filepath.Join(t.TempDir(), "q")
		if msg, code := captureStderr(t, "quantize", fixture, out, "--format", format); code != 0 {
			t.Fatalf("--format %s: exit %d: %s", format, code, msg)
		}
		cfg, err := os.ReadFile(filepath.Join(out, "config.json"))
		if err != nil {
			t.Fatal(err)
		}
		if want := map[string]string{"mxfp4": "MXFP4", "nvfp4": "NVFP4", "fp8": "FP8"}[format]; !strings.Contains(strings.ToUpper(string(cfg)), want) {
			t.Errorf("--format %s: config.json names no %s: %s", format, want, cfg)
		}
	}
}

// TestFormatGroup: the formats with blocks of their own take them unless
// --group is given; the others take --group or its default.
func TestFormatGroup(t *testing.T) {
	for _, tc := range []struct {
		format string
		group  int
		given  bool
		want   int
	}{
		{"nvfp4", 128, false, 0}, {"MXFP4", 128, false, 0}, {"fp8", 128, false, 0},
		{"nvfp4", 32, true, 32}, {"int4", 128, false, 128}, {"fp4", 128, false, 128}, {"int4", 32, true, 32},
	} {
		if got := formatGroup(tc.format, tc.group, tc.given); got != tc.want {
			t.Errorf("formatGroup(%q, %d, %v) = %d, want %d", tc.format, tc.group, tc.given, got, tc.want)
		}
	}
}

// TestKVTypeFor: --kv-type auto is float32 on the CPU and bfloat16 on any
// other backend; an explicit type is kept on both.
func TestKVTypeFor(t *testing.T) {
	c := cpu.New(1)
	for _, tc := range []struct {
		in   dtype.DType
		be   backend.Backend
		want dtype.DType
	}{
		{dtype.Invalid, c, dtype.F32},
		{dtype.Invalid, nil, dtype.BF16}, // not the CPU
		{dtype.BF16, c, dtype.BF16},
		{dtype.F32, nil, dtype.F32},
	} {
		if got := kvTypeFor(tc.in, tc.be); got != tc.want {
			t.Errorf("kvTypeFor(%v, %T) = %v, want %v", tc.in, tc.be, got, tc.want)
		}
	}
}

// TestBenchContext: on the CPU (no graphs, decode runs once) a prompt and
// a decode that fit the context with the two warm-up steps run; one
// position more is refused with a message that counts them.
func TestBenchContext(t *testing.T) {
	fixture := "../../testdata/models/llama-mqa-f32-bias" // context 512
	if out, code := capture(t, "bench", fixture, "--device", "cpu", "--prompt", "300", "--gen", "210", "--membw=false", "--json"); code != 0 {
		t.Fatalf("300 + 210 + 2 = 512 positions: exit %d, %s", code, out)
	}
	msg, code := captureStderr(t, "bench", fixture, "--device", "cpu", "--prompt", "300", "--gen", "211", "--membw=false")
	if code == 0 || !strings.Contains(msg, "--prompt 300 + --gen 211 + 2 warm-up steps = 513 positions exceed the context length 512") {
		t.Errorf("513 positions: exit %d, stderr %q", code, msg)
	}
}
