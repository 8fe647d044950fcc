package quantize_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/marlin-llm/marlin/quant"
	"github.com/marlin-llm/marlin/quantize"
)

func randomTokens(n, vocab int) []int32 {
	rng := rand.New(rand.NewPCG(1, 2))
	t := make([]int32, n)
	for i := range t {
		t[i] = int32(rng.IntN(vocab))
	}
	return t
}

// sameWeights reports whether the checkpoints in folders a and b hold a
// model.safetensors, byte for byte the same.
func sameWeights(a, b string) bool {
	x, errA := os.ReadFile(filepath.Join(a, "model.safetensors"))
	y, errB := os.ReadFile(filepath.Join(b, "model.safetensors"))
	return errA == nil && errB == nil && len(x) > 0 && bytes.Equal(x, y)
}

func relRMS(a, b []float32) float64 {
	var num, den float64
	for i := range a {
		d := float64(a[i] - b[i])
		num += d * d
		den += float64(b[i]) * float64(b[i])
	}
	return math.Sqrt(num / den)
}

// TestCalibratedGPTQ quantizes the biased MQA fixture with GPTQ on random
// calibration tokens: every linear weight is quantized with calibration
// (q, k and v sharing their input's statistics although biases are added
// between their products), the logits stay close, GPTQ's error is below
// round-to-nearest's, and streaming the calibration in small batches
// (one pass per layer group) writes exactly the same checkpoint as one
// batch.
func TestCalibratedGPTQ(t *testing.T) {
	dir := t.TempDir()
	ids := []int32{5, 17, 99, 3, 250, 42}
	ref := logits(t, src, ids)
	spec := quant.Spec{Format: quant.GPTQ, Bits: 4, Group: 16, Sym: true}
	calib := &quantize.Calibration{Tokens: randomTokens(8*64, 256), Rows: 8, Ctx: 64}
	var samples = map[string]int{}
	opt := quantize.Options{Method: quantize.GPTQ, Spec: spec, Calib: calib, GPTQ: quant.GPTQOptions{ActOrder: true},
		Layer: func(l quantize.LayerReport) { samples[l.Name] = l.Samples }}
	rep, err := quantize.Run(src, filepath.Join(dir, "one"), opt)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Quantized != 21 || rep.Passes != 1 || len(rep.Layers) != 21 {
		t.Fatalf("report: %d quantized, %d passes, %d layers", rep.Quantized, rep.Passes, len(rep.Layers))
	}
	var e, er float64
	for _, l := range rep.Layers {
		if l.Samples != 8*64 || !strings.HasPrefix(l.Format, "gptq int4 g16") {
			t.Errorf("%s: %d samples, format %q", l.Name, l.Samples, l.Format)
		}
		e += l.Error
		er += l.RTNError
	}
	t.Logf("Σ error GPTQ %.4g, RTN %.4g (%.2f×); %d passes, Hessian %d B, heap %d B", e, er, e/er, rep.Passes, rep.PeakHessianBytes, rep.PeakHeapBytes)
	if !(e < 0.9*er) {
		t.Errorf("GPTQ error %g not below RTN's %g", e, er)
	}
	got := logits(t, filepath.Join(dir, "one"), ids)
	if d := relRMS(got, ref); d > 0.5 {
		t.Errorf("logits off by %.3f relative RMS", d)
	}
	// streamed: 2 rows per pass
	calib.BatchTokens = 128
	rep2, err := quantize.Run(src, filepath.Join(dir, "stream"), opt)
	if err != nil {
		t.Fatal(err)
	}
	if rep2.Passes <= 4 {
		t.Errorf("streaming ran %d passes", rep2.Passes)
	}
	if !sameWeights(filepath.Join(dir, "one"), filepath.Join(dir, "stream")) {
		t.Error("streamed calibration wrote a different checkpoint")
	}
}

// TestFPTargets: with Options.FPTargets each layer is fit to the
// full-precision model's outputs (each pass runs its rows twice); on the
// calibration text the quantized model's logits then come closer to the
// full-precision ones than with the classic fit, for GPTQ and EXL3.
// Streamed calibration (two rows a pass) writes the same checkpoint as
// one pass.
func TestFPTargets(t *testing.T) {
	dir := t.TempDir()
	toks := randomTokens(8*64, 256)
	// 16-token windows of the calibration rows
	var windows [][]int32
	for r := 0; r < 8; r++ {
		windows = append(windows, toks[r*63:r*63+16], toks[r*63+30:r*63+46])
	}
	var ref [][]float32
	for _, w := range windows {
		ref = append(ref, logits(t, src, w))
	}
	errOf := func(d string) float64 {
		var s float64
		for i, w := range windows {
			s += relRMS(logits(t, d, w), ref[i])
		}
		return s / float64(len(windows))
	}
	for _, c := range []struct {
		name string
		opt  quantize.Options
	}{
		{"gptq int2", quantize.Options{Method: quantize.GPTQ, Spec: quant.Spec{Format: quant.GPTQ, Bits: 2, Group: 16, Sym: true}}},
		{"exl3 2", quantize.Options{Method: quantize.EXL3, Spec: quant.Spec{Format: quant.EXL3, Bits: 2}}},
	} {
		var e [2]float64
		for i, fp := range []bool{true, false} {
			opt := c.opt
			opt.Calib = &quantize.Calibration{Tokens: toks, Rows: 8, Ctx: 64}
			opt.FPTargets = fp
			d := filepath.Join(dir, fmt.Sprint(c.name, fp))
			rep, err := quantize.Run(src, d, opt)
			if err != nil {
				t.Fatal(err)
			}
			if rep.FPTargets != fp || rep.Passes != 1 {
				t.Errorf("%s, FPTargets %v: report FPTargets %v, %d passes", c.name, fp, rep.FPTargets, rep.Passes)
			}
			e[i] = errOf(d)
		}
		t.Logf("%s: logits' relative RMS error %.4f with full-precision targets, %.4f without", c.name, e[0], e[1])
		if !(e[0] < 0.95*e[1]) {
			t.Errorf("%s: full-precision targets do not bring the logits closer (%.4f against %.4f)", c.name, e[0], e[1])
		}
	}
	var notes []string
	opt := quantize.Options{Method: quantize.GPTQ, Spec: quant.Spec{Format: quant.GPTQ, Bits: 2, Group: 16, Sym: true},
		Calib: &quantize.Calibration{Tokens: toks, Rows: 8, Ctx: 64, BatchTokens: 128}, FPTargets: true, Warn: func(m string) { notes = append(notes, m) }}
	rep, err := quantize.Run(src, filepath.Join(dir, "stream"), opt)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.FPTargets || rep.Passes <= 4 || len(notes) != 0 {
		t.Errorf("streamed: FPTargets %v, %d passes, notes %q", rep.FPTargets, rep.Passes, notes)
	}
	if !sameWeights(filepath.Join(dir, "gptq int2true"), filepath.Join(dir, "stream")) {
		t.Error("streamed calibration with full-precision targets wrote a different checkpoint")
	}
}

// TestCalibratedEXL3 quantizes the fixture (hidden 48, intermediate 96:
// padded to 128) with EXL3 at 4 bits and at a fractional 2.5 bits, loads
// the results on the CPU backend and compares logits.
func TestCalibratedEXL3(t *testing.T) {
	dir := t.TempDir()
	ids := []int32{5, 17, 99, 3, 250, 42}
	ref := logits(t, src, ids)
	calib := &quantize.Calibration{Tokens: randomTokens(4*64, 256), Rows: 4, Ctx: 64}
	for _, c := range []struct {
		avg float64
		tol float64
	}{{4, 0.15}, {2.5, 0.6}} {
		out := filepath.Join(dir, "exl3")
		opt := quantize.Options{Method: quantize.EXL3, Spec: quant.Spec{Format: quant.EXL3, Bits: int(c.avg)},
			AvgBits: c.avg, Calib: calib, EXL3: quant.EXL3Options{NoScaleSearch: true}, Force: true}
		rep, err := quantize.Run(src, out, opt)
		if err != nil {
			t.Fatal(err)
		}
		var params, kbits float64
		for _, l := range rep.Layers {
			var k int
			if _, err := fmtSscan(l.Format, &k); err != nil {
				t.Fatalf("%s: format %q", l.Name, l.Format)
			}
			params += float64(l.Out * l.In)
			kbits += float64(k * l.Out * l.In)
		}
		raw, _ := os.ReadFile(filepath.Join(out, "config.json"))
		var cfg struct {
			Q map[string]any `json:"quantization_config"`
		}
		json.Unmarshal(raw, &cfg)
		shapes, _ := cfg.Q["logical_shapes"].(map[string]any)
		got := logits(t, out, ids)
		d := relRMS(got, ref)
		t.Logf("exl3 %.1f bits: %d layers, average K %.3f, logits off by %.3f relative RMS, %d padded shapes recorded", c.avg, len(rep.Layers), kbits/params, d, len(shapes))
		if b, _ := cfg.Q["bits"].(float64); math.Abs(b-kbits/params) > 1e-3 {
			t.Errorf("config bits %v, layers' average K %.4f", cfg.Q["bits"], kbits/params)
		}
		if cfg.Q["quant_method"] != "exl3" || len(shapes) != 21 || rep.Quantized != 21 {
			t.Errorf("config %v", cfg.Q)
		}
		if math.Abs(kbits/params-c.avg) > 0.25 || kbits/params > c.avg+1e-9 {
			t.Errorf("average K %.3f for %.1f bits", kbits/params, c.avg)
		}
		if d > c.tol {
			t.Errorf("logits off by %.3f", d)
		}
	}
}

func fmtSscan(format string, k *int) (int, error) {
	// "exl3 K4 3inst"
	f := strings.Fields(format)
	if len(f) < 2 || f[0] != "exl3" || len(f[1]) < 2 {
		return 0, os.ErrInvalid
	}
	*k = int(f[1][1] - '0')
	return 1, nil
}

func TestCalibratedErrors(t *testing.T) {
	dir := t.TempDir()
	spec := quant.Spec{Format: quant.GPTQ, Bits: 4, Group: 16, Sym: true}
	if _, err := quantize.Run(src, filepath.Join(dir, "a"), quantize.Options{Method: quantize.GPTQ, Spec: spec}); err == nil {
		t.Error("GPTQ without calibration accepted")
	}
	bad := &quantize.Calibration{Tokens: []int32{1, 2, 300}, Rows: 1, Ctx: 3}
	if _, err := quantize.Run(src, filepath.Join(dir, "b"), quantize.Options{Method: quantize.GPTQ, Spec: spec, Calib: bad}); err == nil {
		t.Error("token outside the vocabulary accepted")
	}
	short := &quantize.Calibration{Tokens: []int32{1, 2}, Rows: 1, Ctx: 64}
	if _, err := quantize.Run(src, filepath.Join(dir, "c"), quantize.Options{Method: quantize.GPTQ, Spec: spec, Calib: short}); err == nil {
		t.Error("too short calibration accepted")
	}
	if _, err := os.Stat(filepath.Join(dir, "c")); err == nil {
		t.Error("a failed run left its output folder")
	}
}

// sharedData returns ../shared/data or skips the test.
func sharedData(t *testing.T) string {
	d := filepath.Join("..", "..", "shared", "data")
	if _, err := os.Stat(filepath.Join(d, "models", "tinystories-656k", "model.safetensors")); err != nil {
		t.Skip("../shared/data/models/tinystories-656k is absent: skipping the real-model test")
	}
	return d
}

// TestGPTQTinyStories: on every linear layer of TinyStories-656K with real
// calibration activations (the start of tiny Shakespeare, sequential
// mode), Σ tr((W−Q)·H·(W−Q)ᵀ) at 3 bits is at most 0.8 × round-to-
// nearest's, per channel and with groups of 32.
func TestGPTQTinyStories(t *testing.T) {
	d := sharedData(t)
	text, err := os.ReadFile(filepath.Join(d, "text", "tinyshakespeare", "input.txt"))
	if err != nil {
		t.Skip(err)
	}
	model := filepath.Join(d, "models", "tinystories-656k")
	for _, group := range []int{0, 32} {
		spec := quant.Spec{Format: quant.GPTQ, Bits: 3, Group: group, Sym: true}
		calib := &quantize.Calibration{Text: text[:200000], Name: "tinyshakespeare", Rows: 16, Ctx: 256}
		rep, err := quantize.Run(model, filepath.Join(t.TempDir(), "q"), quantize.Options{Method: quantize.GPTQ, Spec: spec, Calib: calib})
		if err != nil {
			t.Fatal(err)
		}
		var e, er float64
		for _, l := range rep.Layers {
			e += l.Error
			er += l.RTNError
		}
		t.Logf("int3 group %d: %d layers, Σ error GPTQ %.5g, RTN %.5g: ratio %.3f", group, len(rep.Layers), e, er, e/er)
		if len(rep.Layers) != 14 || !(e <= 0.8*er) {
			t.Errorf("group %d: %d layers, ratio %.3f (want ≤ 0.8)", group, len(rep.Layers), e/er)
		}
	}
}

// TestCalibratedAllFixtures runs GPTQ and EXL3 with calibration and
// full-precision targets over every architecture fixture (derived
// matrices, and MoE experts that no
// calibration token is routed to, are done without calibration, with a
// note) and checks the results load and give finite logits, and that the
// MoE experts are calibrated on the rows routed to them: most expert weights have samples
// (all but those with a note), and some fewer than all rows.
func TestCalibratedAllFixtures(t *testing.T) {
	dirs, _ := filepath.Glob("../testdata/models/*")
	for _, dir := range dirs {
		for _, method := range []quantize.Method{quantize.GPTQ, quantize.EXL3} {
			if method == quantize.EXL3 && filepath.Base(dir) != "glm4moelite-bf16" {
				continue // (EXL3's Viterbi is slow: one MoE + MLA fixture)
			}
			out := filepath.Join(t.TempDir(), "q")
			var notes int
			noted := map[string]bool{}
			opt := quantize.Options{Method: method, Calib: &quantize.Calibration{Tokens: randomTokens(2*32, 64), Rows: 2, Ctx: 32},
				Warn: func(s string) { notes++; noted[strings.SplitN(s, ":", 2)[0]] = true }, EXL3: quant.EXL3Options{NoScaleSearch: true}, FPTargets: true}
			if method == quantize.GPTQ {
				opt.Spec = quant.Spec{Format: quant.GPTQ, Bits: 4, Group: 32, Sym: true}
			} else {
				opt.Spec = quant.Spec{Format: quant.EXL3, Bits: 2}
			}
			rep, err := quantize.Run(dir, out, opt)
			if err != nil {
				t.Errorf("%s %v: %v", filepath.Base(dir), method, err)
				continue
			}
			if !rep.FPTargets {
				t.Errorf("%s %v: no full-precision targets", filepath.Base(dir), method)
			}
			l := logits(t, out, []int32{1, 2, 3})
			for _, v := range l {
				if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
					t.Fatalf("%s %v: logit %v", filepath.Base(dir), method, v)
				}
			}
			experts, partial, all, routed := 0, 0, 0, 0
			for _, l := range rep.Layers {
				all = max(all, l.Samples)
			}
			for _, l := range rep.Layers {
				if !strings.Contains(l.Name, ".experts.") || strings.Contains(l.Name, "shared") {
					continue
				}
				if routed++; noted[l.Name] {
					continue
				}
				experts++
				if l.Samples == 0 {
					t.Errorf("%s %v: %s: no calibration samples and no note", filepath.Base(dir), method, l.Name)
				}
				if l.Samples < all {
					partial++
				}
			}
			if 2*experts < routed {
				t.Errorf("%s %v: %d of %d expert weights calibrated", filepath.Base(dir), method, experts, routed)
			}
			if experts > 0 && partial == 0 {
				t.Errorf("%s %v: every one of %d expert weights saw all %d rows: not the routed ones", filepath.Base(dir), method, experts, all)
			}
			t.Logf("%s %v: %d quantized, %d kept, %d notes, %d calibrated expert weights", filepath.Base(dir), method, rep.Quantized, rep.Kept, notes, experts)
			if method == quantize.GPTQ && notes > 0 {
				// the same job again writes the same bytes (the weights no
				// token reached are quantized in the order of their names)
				again := filepath.Join(t.TempDir(), "q")
				if _, err := quantize.Run(dir, again, opt); err != nil {
					t.Fatal(err)
				}
				if !sameWeights(out, again) {
					t.Errorf("%s %v: a second run wrote a different checkpoint", filepath.Base(dir), method)
				}
				// streamed, one row a pass: the twin passes' targets and
				// the experts' gathered rows through the per-group passes
				c := *opt.Calib
				c.BatchTokens = 32
				sopt := opt
				sopt.Calib = &c
				streamed := filepath.Join(t.TempDir(), "q")
				rep, err := quantize.Run(dir, streamed, sopt)
				if err != nil {
					t.Fatalf("%s %v streamed: %v", filepath.Base(dir), method, err)
				}
				if !rep.FPTargets || rep.Passes < 4 {
					t.Errorf("%s %v streamed: FPTargets %v, %d passes", filepath.Base(dir), method, rep.FPTargets, rep.Passes)
				}
				for _, v := range logits(t, streamed, []int32{1, 2, 3}) {
					if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
						t.Fatalf("%s %v streamed: logit %v", filepath.Base(dir), method, v)
					}
				}
			}
		}
	}
}

// TestCalibratedHeadBits quantizes the fixture with GPTQ at 4 bits and its
// output head at 8: the checkpoint's config must say so (a dynamic rule),
// so that the model loads and computes close logits, and the quantizer
// itself reloads the head through that rule.
func TestCalibratedHeadBits(t *testing.T) {
	out := filepath.Join(t.TempDir(), "q")
	head := quant.Spec{Format: quant.GPTQ, Bits: 8, Group: 16, Sym: true}
	_, err := quantize.Run(src, out, quantize.Options{Method: quantize.GPTQ, Spec: quant.Spec{Format: quant.GPTQ, Bits: 4, Group: 16, Sym: true},
		Head: &head, Calib: &quantize.Calibration{Tokens: randomTokens(4*64, 256), Rows: 4, Ctx: 64}})
	if err != nil {
		t.Fatal(err)
	}
	ids := []int32{5, 17, 99}
	if d := relRMS(logits(t, out, ids), logits(t, src, ids)); d > 0.5 {
		t.Errorf("logits off by %.3f relative RMS", d)
	}
}

// TestCalibratedResume stops calibrated runs between two weights and
// runs them again: each second run must take the journaled weights,
// finish, remove the journal and write exactly the files of a run that
// was never stopped — GPTQ with every row in one pass and EXL3 streaming
// its calibration in small batches (one pass per layer group, both
// batches), and GPTQ with full-precision targets both ways. A journal of
// another job is discarded with a note.
func TestCalibratedResume(t *testing.T) {
	dir := t.TempDir()
	calib := &quantize.Calibration{Tokens: randomTokens(8*64, 256), Rows: 8, Ctx: 64}
	jobs := []quantize.Options{
		{Method: quantize.GPTQ, Spec: quant.Spec{Format: quant.GPTQ, Bits: 4, Group: 16, Sym: true}, Calib: calib},
		{Method: quantize.EXL3, Spec: quant.Spec{Format: quant.EXL3, Bits: 2}, EXL3: quant.EXL3Options{NoScaleSearch: true},
			Calib: &quantize.Calibration{Tokens: calib.Tokens, Rows: 8, Ctx: 64, BatchTokens: 4 * 64}},
		// full-precision targets: twin passes, one and streamed
		{Method: quantize.GPTQ, Spec: quant.Spec{Format: quant.GPTQ, Bits: 3, Group: 16, Sym: true}, Calib: calib, FPTargets: true},
		{Method: quantize.GPTQ, Spec: quant.Spec{Format: quant.GPTQ, Bits: 3, Group: 16, Sym: true}, FPTargets: true,
			Calib: &quantize.Calibration{Tokens: calib.Tokens, Rows: 8, Ctx: 64, BatchTokens: 4 * 64}},
	}
	read := func(d string) map[string][]byte {
		files := map[string][]byte{}
		ents, err := os.ReadDir(d)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			b, err := os.ReadFile(filepath.Join(d, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			files[e.Name()] = b
		}
		return files
	}
	for i, opt := range jobs {
		whole := filepath.Join(dir, fmt.Sprintf("whole%d", i))
		if _, err := quantize.Run(src, whole, opt); err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(dir, fmt.Sprintf("out%d", i))
		for _, stopAfter := range []int{3, 9} {
			ctx, cancel := context.WithCancel(context.Background())
			n := 0
			o := opt
			o.Context = ctx
			o.Layer = func(quantize.LayerReport) {
				if n++; n == stopAfter {
					cancel()
				}
			}
			_, err := quantize.Run(src, out, o)
			cancel()
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("%v stopped after %d weights: error %v", opt.Method, stopAfter, err)
			}
			if _, err := os.Stat(out); err == nil {
				t.Fatalf("%v: a stopped run left %s", opt.Method, out)
			}
			raw, err := os.ReadFile(filepath.Join(out+".partial", "journal.json"))
			var j struct{ Entries []json.RawMessage }
			if err != nil || json.Unmarshal(raw, &j) != nil || len(j.Entries) != stopAfter {
				t.Fatalf("%v: journal after %d weights: %d entries (%v)", opt.Method, stopAfter, len(j.Entries), err)
			}
		}
		redone := 0
		opt.Layer = func(quantize.LayerReport) { redone++ }
		rep, err := quantize.Run(src, out, opt)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(out + ".partial"); err == nil {
			t.Errorf("%v: the journal is still there", opt.Method)
		}
		if rep.Resumed != 9 {
			t.Errorf("%v: %d weights resumed from the journal, want 9", opt.Method, rep.Resumed)
		}
		if want := len(rep.Layers); redone != want {
			t.Errorf("%v: %d layer reports after resuming, want %d (journaled ones included)", opt.Method, redone, want)
		}
		a, b := read(whole), read(out)
		if len(a) != len(b) {
			t.Fatalf("%v: %d files, want %d", opt.Method, len(b), len(a))
		}
		for name, want := range a {
			if !bytes.Equal(b[name], want) {
				t.Errorf("%v: %s differs from the uninterrupted run's", opt.Method, name)
			}
		}
	}
	// another job's journal in the way: discarded, with a note
	out := filepath.Join(dir, "other")
	ctx, cancel := context.WithCancel(context.Background())
	o := jobs[0]
	o.Context, o.Layer = ctx, func(quantize.LayerReport) { cancel() }
	if _, err := quantize.Run(src, out, o); !errors.Is(err, context.Canceled) {
		t.Fatalf("stopped GPTQ run: %v", err)
	}
	var notes []string
	o = jobs[1]
	o.Warn = func(s string) { notes = append(notes, s) }
	if _, err := quantize.Run(src, out, o); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(notes, "\n"), "another job") {
		t.Errorf("no note about the other job's journal: %q", notes)
	}
	// a folder in the way that is not a journal: an error, nothing deleted
	out = filepath.Join(dir, "busy")
	os.MkdirAll(out+".partial", 0o755)
	os.WriteFile(filepath.Join(out+".partial", "mine.txt"), []byte("x"), 0o644)
	if _, err := quantize.Run(src, out, jobs[0]); err == nil || !strings.Contains(err.Error(), "not a marlin quantize journal") {
		t.Errorf("a foreign folder at OUT.partial: %v", err)
	}
	if _, err := os.Stat(filepath.Join(out+".partial", "mine.txt")); err != nil {
		t.Errorf("the foreign folder's file is gone: %v", err)
	}
}
