package main

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/marlin-llm/marlin/backend"
	"github.com/marlin-llm/marlin/backend/cpu"
	"github.com/marlin-llm/marlin/dtype"
)

func init() {
	register(command{name: "bench", usage: "[MODEL] [--synthetic SHAPE --format F[,F...] --group N --head-bits B] [--prompt 512] [--gen 32] [--json]",
		summary: "prefill and decode tokens/s, bandwidth and memory", run: benchCmd})
}

type benchResult struct {
	Model        string  `json:"model"`
	Device       string  `json:"device"`
	Threads      int     `json:"threads"`
	Formats      any     `json:"formats"`
	WeightBytes  int64   `json:"weight_bytes"`
	DecodeBytes  int64   `json:"decode_bytes_per_token"`
	PromptTokens int     `json:"prompt_tokens"`
	PrefillTokS  float64 `json:"prefill_tokens_per_second"`
	GenTokens    int     `json:"generated_tokens"`
	DecodeTokS   float64 `json:"decode_tokens_per_second"`
	DecodeGBs    float64 `json:"decode_weight_gb_per_second"`
	CopyGBs      float64 `json:"memory_copy_gb_per_second,omitempty"` // the larger of before and after the decode
	// ReadGBs is a bare read of memory on the same threads (cpu.Bandwidth's
	// Read), the larger of before and after the decode: a plain reference
	// for a decode that reads its weights once.
	ReadGBs float64 `json:"memory_read_gb_per_second,omitempty"`
	// DecodeNoGraphTokS is decode with CUDA graphs off (backends that
	// capture decode steps into graphs), for comparison.
	DecodeNoGraphTokS float64 `json:"decode_tokens_per_second_without_graphs,omitempty"`
	// DecodeForwardMs is the mean host time of a decode step's Forward call
	// (with CUDA graphs: recording the step, before the device runs it).
	DecodeForwardMs float64 `json:"decode_forward_ms,omitempty"`
	// KV8KBytes is the KV cache of 8192 tokens as this backend stores it.
	KV8KBytes      int64   `json:"kv_bytes_8k_tokens"`
	BandwidthShare float64 `json:"decode_share_of_copy_bandwidth,omitempty"`
	ReadShare      float64 `json:"decode_share_of_read_bandwidth,omitempty"`
	KVBytesPerTok  int64   `json:"kv_bytes_per_token"`
	// KVType is the cache's number type (--kv-type, auto resolved).
	KVType string `json:"kv_type"`
	// Batch sequences decoding together (--batch): their tokens/s in all.
	Batch           int     `json:"batch,omitempty"`
	BatchDecodeTokS float64 `json:"batch_decode_tokens_per_second,omitempty"`
	Date            string  `json:"date"`
	GoVersion       string  `json:"go"`
}

func benchCmd(args []string) error {
	f := newFlags("bench", "[MODEL] [flags]")
	mo := addModelFlags(f)
	kvFlag := addKVTypeFlag(f)
	synth := f.String("synthetic", "", "benchmark a random-weight model of this shape: "+shapeNames())
	format := f.String("format", "bf16", "synthetic model formats, comma-separated: bf16, quantize formats with an optional group (int8, int4:32, fp4:32 ...), or exl3:K (random K-bit trellis codes, no search)")
	group := f.Int("group", 128, "group size of synthetic formats that name none")
	headBits := f.Int("head-bits", 0, "quantize the synthetic model's output head too, to this many bits (0: keep it 16-bit)")
	promptN := f.Int("prompt", 512, "prefill tokens")
	genN := f.Int("gen", 32, "decode tokens")
	batchN := f.Int("batch", 0, "also measure aggregate decode of this many sequences at once (each continuing the prompt)")
	layers := f.Int("layers", 0, "synthetic models: this many layers instead of the shape's (profiling)")
	membw := f.Bool("membw", true, "measure the memory copy and bare read bandwidth in the same run (CPU)")
	asJSON := f.Bool("json", false, "print JSON")
	cpuProfile := f.String("cpuprofile", "", "write a CPU profile of the measurements to this file")
	pos, err := f.parse(args)
	if err != nil {
		return err
	}
	kvType, err := kvFlag()
	if err != nil {
		return err
	}
	stopProfile, err := startCPUProfile(*cpuProfile)
	if err != nil {
		return err
	}
	defer stopProfile()
	var dirs []string
	switch {
	case *synth != "":
		for _, fm := range strings.Split(*format, ",") {
			name, g := fm, formatGroup(fm, *group, f.set("group"))
			if i := strings.IndexByte(fm, ':'); i >= 0 {
				name = fm[:i]
				if g, err = strconv.Atoi(fm[i+1:]); err != nil {
					return usagef("--format %q: bad group", fm)
				}
			}
			d, err := synthetic(*synth, name, g, *headBits, *layers)
			if err != nil {
				return err
			}
			dirs = append(dirs, d)
		}
	case len(pos) == 1:
		dirs = []string{pos[0]}
	case len(pos) > 1:
		return usagef("want at most one MODEL folder")
	default:
		dirs = []string{""}
	}
	var results []*benchResult
	for _, dir := range dirs {
		res, err := benchOne(mo, dir, *promptN, *genN, *batchN, *membw, kvType)
		if err != nil {
			return err
		}
		results = append(results, res)
	}
	if *asJSON {
		e := json.NewEncoder(os.Stdout)
		e.SetIndent("", "  ")
		return e.Encode(results)
	}
	base := results[0]
	fmt.Printf("%-48s %12s %12s %10s %10s %9s %9s %9s\n", "model", "weights GB", "prefill t/s", "decode t/s", "vs first", "GB/s", "of copy", "of read")
	for _, r := range results {
		share, rshare := "-", "-" // no bandwidth measured (--membw=false, or a GPU)
		if r.CopyGBs > 0 {
			share = fmt.Sprintf("%.0f%%", 100*r.BandwidthShare)
		}
		if r.ReadGBs > 0 {
			rshare = fmt.Sprintf("%.0f%%", 100*r.ReadShare)
		}
		fmt.Printf("%-48s %12.3f %12.1f %10.2f %9.2fx %9.1f %9s %9s\n", filepath.Base(r.Model), float64(r.DecodeBytes)/1e9,
			r.PrefillTokS, r.DecodeTokS, r.DecodeTokS/base.DecodeTokS, r.DecodeGBs, share, rshare)
	}
	for _, r := range results {
		if r.CopyGBs > 0 {
			fmt.Printf("%-48s memory on %d threads: copy %.1f GB/s (read + written), bare read %.1f GB/s\n", filepath.Base(r.Model), r.Threads, r.CopyGBs, r.ReadGBs)
		}
	}
	for _, r := range results {
		if r.Batch > 1 {
			fmt.Printf("%-48s decode of %d sequences at once: %.1f tok/s in all\n", filepath.Base(r.Model), r.Batch, r.BatchDecodeTokS)
		}
	}
	for _, r := range results {
		if r.DecodeNoGraphTokS > 0 {
			fmt.Printf("%-48s decode %.2f tok/s with CUDA graphs, %.2f without; memory: weights %.2f GB + KV of 8K tokens (%s) %.2f GB = %.2f GB\n",
				filepath.Base(r.Model), r.DecodeTokS, r.DecodeNoGraphTokS, float64(r.WeightBytes)/1e9, r.KVType, float64(r.KV8KBytes)/1e9,
				float64(r.WeightBytes+r.KV8KBytes)/1e9)
		}
	}
	return nil
}

// benchOne measures one model: prefill of promptN random tokens as one
// batch, then genN decode steps of one token, and (membw) the memory copy
// bandwidth right before and right after the decode (the larger counts).
func benchOne(mo *modelOpts, dir string, promptN, genN, batchN int, membw bool, kvType dtype.DType) (*benchResult, error) {
	s, err := mo.open(dir, false)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	info := s.m.Info()
	kvSpec := info.KV
	kvSpec.DType = kvTypeFor(kvType, s.be)
	res := &benchResult{Model: s.dir, Device: s.be.Name(), Formats: info.Formats, WeightBytes: info.WeightBytes,
		DecodeBytes: info.DecodeBytes, Date: time.Now().UTC().Format(time.RFC3339), GoVersion: runtime.Version()}
	if c, ok := s.be.(*cpu.Backend); ok {
		res.Threads = c.Threads()
		if membw {
			res.CopyGBs, res.ReadGBs = bandwidthGBs(c)
			runtime.GC()
		}
	}
	// decode runs after two warm-up steps (on a GPU the first issues a
	// step, the second captures it into a graph), and on backends with
	// graphs a second time without them
	graphs, hasGraphs := s.be.(interface{ SetGraphs(bool) })
	runs := 1
	if hasGraphs {
		runs = 2
	}
	total := promptN + runs*genN + 2
	if info.ContextLength > 0 && total > info.ContextLength {
		how := fmt.Sprintf("--prompt %d + --gen %d + 2 warm-up steps", promptN, genN)
		if runs == 2 {
			how = fmt.Sprintf("--prompt %d + 2 × --gen %d (with and without graphs) + 2 warm-up steps", promptN, genN)
		}
		return nil, fmt.Errorf("%s = %d positions exceed the context length %d", how, total, info.ContextLength)
	}
	spec := kvSpec
	spec.BlockSize = 16
	spec.Blocks = (total + 15) / 16
	// batched decode: each sequence shares the prompt's full blocks and
	// continues in blocks of its own
	shared := promptN / 16
	own := (genN+2+15)/16 + 1
	if batchN > 1 {
		spec.Blocks += batchN * own
	}
	cache, err := s.be.NewKVCache(spec)
	if err != nil {
		return nil, err
	}
	// as the backend stores it
	res.KVBytesPerTok = cache.Bytes() / int64(spec.Blocks*spec.BlockSize)
	res.KVType = strings.ToLower(spec.DType.String())
	res.KV8KBytes = 8192 * res.KVBytesPerTok
	blocks := make([]int32, spec.Blocks)
	for i := range blocks {
		blocks[i] = int32(i)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	prompt := make([]int32, promptN)
	for i := range prompt {
		prompt[i] = int32(rng.IntN(info.Vocab))
	}
	logits := make([]float32, info.Vocab)
	var fwd time.Duration // host time in Forward
	step := func(tokens []int32, pos int) error {
		b := &backend.Batch{Tokens: tokens}
		for i := range tokens {
			b.Pos = append(b.Pos, int32(pos+i))
		}
		b.Seqs = []backend.Seq{{Start: 0, Len: len(tokens), Blocks: blocks}}
		t0 := time.Now()
		out := s.m.Forward(b, cache, []int32{int32(len(tokens) - 1)})
		fwd += time.Since(t0)
		return s.be.Read(logits, out)
	}
	// warm up (page in the weights; on a GPU also load the libraries and
	// size the scratch buffers that a prefill of this length uses), then
	// prefill
	if err := step(prompt[:1], 0); err != nil {
		return nil, err
	}
	if s.be.Name() != "cpu" {
		if err := step(prompt, 0); err != nil {
			return nil, err
		}
	}
	start := time.Now()
	if err := step(prompt, 0); err != nil {
		return nil, err
	}
	res.PromptTokens = promptN
	res.PrefillTokS = float64(promptN) / time.Since(start).Seconds()
	tok := prompt[len(prompt)-1]
	for i := range 2 {
		if err := step([]int32{tok}, promptN+i); err != nil {
			return nil, err
		}
	}
	prof, _ := s.be.(profiler)
	profileReset(prof)
	start, fwd = time.Now(), 0
	for i := range genN {
		if err := step([]int32{tok}, promptN+2+i); err != nil {
			return nil, err
		}
		tok = int32(rng.IntN(info.Vocab))
	}
	res.GenTokens = genN
	res.DecodeTokS = float64(genN) / time.Since(start).Seconds()
	res.DecodeForwardMs = fwd.Seconds() * 1e3 / float64(max(genN, 1))
	profileReport(prof, genN, filepath.Base(s.dir)+": decode, one sequence")
	if batchN > 1 {
		// batchN sequences decode together from position shared·16 (the
		// prompt's full blocks, read-only); one step gives each a token
		bt := &backend.Batch{Tokens: make([]int32, batchN), Pos: make([]int32, batchN)}
		var outRows []int32
		for j := range batchN {
			tab := append([]int32(nil), blocks[:shared]...)
			for i := range own {
				tab = append(tab, int32((total+15)/16+j*own+i))
			}
			bt.Seqs = append(bt.Seqs, backend.Seq{Start: j, Len: 1, Blocks: tab})
			outRows = append(outRows, int32(j))
		}
		blogits := make([]float32, batchN*info.Vocab)
		bstep := func(i int) error {
			for j := range batchN {
				bt.Tokens[j] = int32(rng.IntN(info.Vocab))
				bt.Pos[j] = int32(shared*16 + i)
			}
			return s.be.Read(blogits, s.m.Forward(bt, cache, outRows))
		}
		for i := range 2 { // warm-up: scratch sizes of this batch, graph capture
			if err := bstep(i); err != nil {
				return nil, err
			}
		}
		profileReset(prof)
		start = time.Now()
		for i := 2; i < genN+2; i++ {
			if err := bstep(i); err != nil {
				return nil, err
			}
		}
		res.Batch = batchN
		res.BatchDecodeTokS = float64(batchN*genN) / time.Since(start).Seconds()
		profileReport(prof, genN, fmt.Sprintf("%s: decode, %d sequences", filepath.Base(s.dir), batchN))
	}
	if hasGraphs {
		// the same decode steps again with every kernel issued separately
		graphs.SetGraphs(false)
		start = time.Now()
		for i := range genN {
			if err := step([]int32{tok}, promptN+2+genN+i); err != nil {
				graphs.SetGraphs(true)
				return nil, err
			}
		}
		res.DecodeNoGraphTokS = float64(genN) / time.Since(start).Seconds()
		graphs.SetGraphs(true)
	}
	res.DecodeGBs = float64(info.DecodeBytes) * res.DecodeTokS / 1e9
	if c, ok := s.be.(*cpu.Backend); ok && membw {
		// again after the decode, keeping the larger: a machine whose
		// bandwidth changes level during the run (the development VM's
		// does, within a minute) must not make the share look larger
		runtime.GC()
		cp, rd := bandwidthGBs(c)
		res.CopyGBs, res.ReadGBs = max(res.CopyGBs, cp), max(res.ReadGBs, rd)
	}
	if res.CopyGBs > 0 {
		res.BandwidthShare = res.DecodeGBs / res.CopyGBs
	}
	if res.ReadGBs > 0 {
		res.ReadShare = res.DecodeGBs / res.ReadGBs
	}
	return res, nil
}

// bandwidthGBs measures the memory bandwidth with the backend's threads,
// in GB/s: a copy (bytes read and written) and a bare read.
func bandwidthGBs(c *cpu.Backend) (copyGBs, readGBs float64) {
	bw := cpu.MemoryBandwidth(c.Threads(), 1<<30, 3)
	return bw.Copy / 1e9, bw.Read / 1e9
}

// profiler is a backend that times its kernels (the CUDA backend with
// MARLIN_CUDA_PROFILE=1); a nil one does nothing.
type profiler interface {
	ProfileReset()
	ProfileReport(steps int) string
}

func profileReset(p profiler) {
	if p != nil {
		p.ProfileReset()
	}
}

// profileReport prints p's report of steps steps under title to stderr.
func profileReport(p profiler, steps int, title string) {
	if p == nil {
		return
	}
	if r := p.ProfileReport(steps); r != "" {
		fmt.Fprintf(os.Stderr, "%s\n%s", title, r)
	}
}
