package main

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/marlin-llm/marlin/backend"
	"github.com/marlin-llm/marlin/backend/cpu"
	"github.com/marlin-llm/marlin/dtype"
	"github.com/marlin-llm/marlin/format/hf"
	"github.com/marlin-llm/marlin/format/safetensors"
	"github.com/marlin-llm/marlin/quant"
	"github.com/marlin-llm/marlin/quantize"
)

func init() {
	register(command{name: "bench", usage: "[MODEL] [--synthetic SHAPE --format F[,F...] --group N --head-bits B] [--prompt 512] [--gen 32] [--json]",
		summary: "prefill and decode tokens/s, bandwidth and memory", run: benchCmd})
}

// shapes are the synthetic models bench can build with random weights.
var shapes = map[string]map[string]any{
	"llama3.2-1b": {"hidden_size": 2048, "num_hidden_layers": 16, "num_attention_heads": 32, "num_key_value_heads": 8,
		"intermediate_size": 8192, "vocab_size": 128256, "tie_word_embeddings": true, "head_dim": 64},
	"llama3-8b": {"hidden_size": 4096, "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
		"intermediate_size": 14336, "vocab_size": 128256, "tie_word_embeddings": false, "head_dim": 128},
	"tiny": {"hidden_size": 256, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
		"intermediate_size": 512, "vocab_size": 1024, "tie_word_embeddings": false, "head_dim": 64},
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
	CopyGBs      float64 `json:"memory_copy_gb_per_second,omitempty"`
	// DecodeNoGraphTokS is decode with CUDA graphs off (backends that
	// capture decode steps into graphs), for comparison.
	DecodeNoGraphTokS float64 `json:"decode_tokens_per_second_without_graphs,omitempty"`
	// KV8KBytes is the KV cache of 8192 tokens as this backend stores it.
	KV8KBytes      int64   `json:"kv_bytes_8k_tokens"`
	BandwidthShare float64 `json:"decode_share_of_copy_bandwidth,omitempty"`
	KVBytesPerTok  int64   `json:"kv_bytes_per_token"`
	Date           string  `json:"date"`
	GoVersion      string  `json:"go"`
}

func benchCmd(args []string) error {
	f := newFlags("bench", "[MODEL] [flags]")
	mo := addModelFlags(f)
	synth := f.String("synthetic", "", "benchmark a random-weight model of this shape: llama3.2-1b, llama3-8b, tiny, glm4.7-flash, mixtral-8x7b")
	format := f.String("format", "bf16", "synthetic model formats, comma-separated: bf16, or quantize formats with an optional group (int8, int4:32, fp4:32 ...)")
	group := f.Int("group", 128, "group size of synthetic formats that name none")
	headBits := f.Int("head-bits", 0, "quantize the synthetic model's output head too, to this many bits (0: keep it 16-bit)")
	promptN := f.Int("prompt", 512, "prefill tokens")
	genN := f.Int("gen", 32, "decode tokens")
	membw := f.Bool("membw", true, "measure memory copy bandwidth in the same run")
	asJSON := f.Bool("json", false, "print JSON")
	cpuProfile := f.String("cpuprofile", "", "write a CPU profile of the measurements to this file")
	pos, err := f.parse(args)
	if err != nil {
		return err
	}
	if *cpuProfile != "" {
		pf, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		defer pf.Close()
		if err := pprof.StartCPUProfile(pf); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	var dirs []string
	switch {
	case *synth != "":
		for _, fm := range strings.Split(*format, ",") {
			name, g := fm, *group
			if i := strings.IndexByte(fm, ':'); i >= 0 {
				name = fm[:i]
				if g, err = strconv.Atoi(fm[i+1:]); err != nil {
					return usagef("--format %q: bad group", fm)
				}
			}
			d, err := synthetic(*synth, name, g, *headBits)
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
		res, err := benchOne(mo, dir, *promptN, *genN, *membw)
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
	fmt.Printf("%-48s %12s %12s %10s %10s %9s %9s\n", "model", "weights GB", "prefill t/s", "decode t/s", "vs first", "GB/s", "of copy")
	for _, r := range results {
		fmt.Printf("%-48s %12.3f %12.1f %10.2f %9.2fx %9.1f %8.0f%%\n", filepath.Base(r.Model), float64(r.DecodeBytes)/1e9,
			r.PrefillTokS, r.DecodeTokS, r.DecodeTokS/base.DecodeTokS, r.DecodeGBs, 100*r.BandwidthShare)
	}
	for _, r := range results {
		if r.DecodeNoGraphTokS > 0 {
			fmt.Printf("%-48s decode %.2f tok/s with CUDA graphs, %.2f without; memory: weights %.2f GB + KV of 8K tokens %.2f GB = %.2f GB\n",
				filepath.Base(r.Model), r.DecodeTokS, r.DecodeNoGraphTokS, float64(r.WeightBytes)/1e9, float64(r.KV8KBytes)/1e9,
				float64(r.WeightBytes+r.KV8KBytes)/1e9)
		}
	}
	return nil
}

// benchOne measures one model: prefill of promptN random tokens as one
// batch, then genN decode steps of one token, and (membw) the memory copy
// bandwidth right before.
func benchOne(mo *modelOpts, dir string, promptN, genN int, membw bool) (*benchResult, error) {
	s, err := mo.open(dir, false)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	info := s.m.Info()
	res := &benchResult{Model: s.dir, Device: s.be.Name(), Formats: info.Formats, WeightBytes: info.WeightBytes,
		DecodeBytes: info.DecodeBytes, KVBytesPerTok: info.KV.TokenBytes(), Date: time.Now().UTC().Format(time.RFC3339),
		GoVersion: runtime.Version(), KV8KBytes: 8192 * info.KV.TokenBytes()}
	if c, ok := s.be.(*cpu.Backend); ok {
		res.Threads = c.Threads()
		if membw {
			res.CopyGBs = cpu.MemoryBandwidth(c.Threads(), 1<<30, 3) / 1e9
			runtime.GC()
		}
	}
	total := promptN + 2*genN // decode runs twice on backends with graphs
	if info.ContextLength > 0 && total > info.ContextLength {
		return nil, fmt.Errorf("--prompt + --gen = %d exceeds the context length %d", total, info.ContextLength)
	}
	spec := info.KV
	spec.BlockSize = 16
	spec.Blocks = (total + 15) / 16
	cache, err := s.be.NewKVCache(spec)
	if err != nil {
		return nil, err
	}
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
	step := func(tokens []int32, pos int) error {
		b := &backend.Batch{Tokens: tokens}
		for i := range tokens {
			b.Pos = append(b.Pos, int32(pos+i))
		}
		b.Seqs = []backend.Seq{{Start: 0, Len: len(tokens), Blocks: blocks}}
		out := s.m.Forward(b, cache, []int32{int32(len(tokens) - 1)})
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
	start = time.Now()
	tok := prompt[len(prompt)-1]
	for i := range genN {
		if err := step([]int32{tok}, promptN+i); err != nil {
			return nil, err
		}
		tok = int32(rng.IntN(info.Vocab))
	}
	res.GenTokens = genN
	res.DecodeTokS = float64(genN) / time.Since(start).Seconds()
	if g, ok := s.be.(interface{ SetGraphs(bool) }); ok {
		// the same decode steps again with every kernel issued separately
		g.SetGraphs(false)
		start = time.Now()
		for i := range genN {
			if err := step([]int32{tok}, promptN+genN+i); err != nil {
				g.SetGraphs(true)
				return nil, err
			}
		}
		res.DecodeNoGraphTokS = float64(genN) / time.Since(start).Seconds()
		g.SetGraphs(true)
	}
	res.DecodeGBs = float64(info.DecodeBytes) * res.DecodeTokS / 1e9
	if res.CopyGBs > 0 {
		res.BandwidthShare = res.DecodeGBs / res.CopyGBs
	}
	return res, nil
}

// synthetic returns a folder with a random-weight model of the given shape
// and format, building it (in the user cache directory) on first use.
func synthetic(shape, format string, group, headBits int) (string, error) {
	if _, ok := moeShapes[shape]; ok {
		return syntheticMoE(shape, format, group, headBits)
	}
	cfg, ok := shapes[shape]
	if !ok {
		return "", usagef("unknown --synthetic shape %q (llama3.2-1b, llama3-8b, tiny, glm4.7-flash, mixtral-8x7b)", shape)
	}
	base, err := os.UserCacheDir()
	if err != nil {
		base = os.TempDir()
	}
	root := filepath.Join(base, "marlin", "synthetic")
	if err := os.MkdirAll(root, 0o755); err != nil {
		return "", err
	}
	src := filepath.Join(root, shape+"-bf16")
	direct := headBits == 0 && (strings.HasPrefix(format, "int") && format != "int8" || format == "fp4")
	if _, err := os.Stat(filepath.Join(src, "config.json")); err != nil && (format == "bf16" || !direct) {
		fmt.Fprintf(os.Stderr, "building random-weight %s model in %s ...\n", shape, src)
		if err := writeSynthetic(src, cfg); err != nil {
			return "", err
		}
	}
	if format == "bf16" {
		return src, nil
	}
	spec, err := quant.ParseSpec(format, group, true)
	if err != nil {
		return "", usagef("%v", err)
	}
	opt := quantize.Options{Spec: spec}
	name := fmt.Sprintf("%s-%s", shape, strings.ReplaceAll(spec.String(), " ", "-"))
	if headBits != 0 {
		hs := spec
		if spec.Format == quant.GPTQ {
			hs.Bits = headBits
		}
		opt.Head = &hs
		name += fmt.Sprintf("-head%d", headBits)
	}
	if headBits == 0 && (spec.Format == quant.GPTQ || spec.Format == quant.FP4) {
		// random codes and scales written directly: the same format and
		// sizes as quantizing the bf16 model, without reading 16 GB and
		// quantizing on one core (bench measures speed, not quality)
		dst := filepath.Join(root, name+"-random")
		if _, err := os.Stat(filepath.Join(dst, "config.json")); err == nil {
			return dst, nil
		}
		fmt.Fprintf(os.Stderr, "building random-weight %s model in %s ...\n", shape, dst)
		return dst, writeSyntheticQuant(dst, cfg, spec)
	}
	dst := filepath.Join(root, name)
	if _, err := os.Stat(filepath.Join(dst, "config.json")); err == nil {
		return dst, nil
	}
	fmt.Fprintf(os.Stderr, "quantizing it to %s ...\n", name)
	if _, err := quantize.Run(src, dst, opt); err != nil {
		return "", err
	}
	return dst, nil
}

// writeSynthetic writes a LlamaForCausalLM with uniformly random BF16
// weights (std ≈ 0.02, like a trained model's) and ones for the norms.
func writeSynthetic(dir string, shape map[string]any) error {
	w, err := hf.NewWriter(dir, true)
	if err != nil {
		return err
	}
	defer w.Abort()
	cfg := map[string]any{"architectures": []string{"LlamaForCausalLM"}, "model_type": "llama",
		"hidden_act": "silu", "max_position_embeddings": 4096, "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
		"bos_token_id": 1, "eos_token_id": 2, "torch_dtype": "bfloat16"}
	for k, v := range shape {
		cfg[k] = v
	}
	H, I, V, L := shape["hidden_size"].(int), shape["intermediate_size"].(int), shape["vocab_size"].(int), shape["num_hidden_layers"].(int)
	hd, nh, nkv := shape["head_dim"].(int), shape["num_attention_heads"].(int), shape["num_key_value_heads"].(int)
	seed := uint64(42)
	add := func(name string, shape ...int) error {
		n := 1
		for _, d := range shape {
			n *= d
		}
		data := make([]byte, 2*n)
		// chunks of 1M values, each from its own generator, on every core
		// (an 8B model is 8·10⁹ values: minutes on one core)
		const chunk = 1 << 20
		seed++
		var wg sync.WaitGroup
		sem := make(chan struct{}, runtime.GOMAXPROCS(0))
		for c0 := 0; c0 < n; c0 += chunk {
			wg.Add(1)
			sem <- struct{}{}
			go func(c0 int) {
				defer wg.Done()
				defer func() { <-sem }()
				rng := rand.New(rand.NewPCG(seed, uint64(c0)))
				for i := c0; i < min(n, c0+chunk); i++ {
					var v float32
					if len(shape) == 1 {
						v = 1 + 0.1*(rng.Float32()-0.5)
					} else {
						v = 0.07 * (rng.Float32() - 0.5) // uniform, std 0.02
					}
					h := dtype.F32ToBF16(v)
					data[2*i], data[2*i+1] = byte(h), byte(h>>8)
				}
			}(c0)
		}
		wg.Wait()
		return w.AddTensor(safetensors.Tensor{Name: name, DType: dtype.BF16, Shape: shape, Data: data})
	}
	if err := add("model.embed_tokens.weight", V, H); err != nil {
		return err
	}
	for l := range L {
		p := fmt.Sprintf("model.layers.%d.", l)
		for _, t := range []struct {
			n    string
			dims []int
		}{
			{"input_layernorm.weight", []int{H}}, {"post_attention_layernorm.weight", []int{H}},
			{"self_attn.q_proj.weight", []int{nh * hd, H}}, {"self_attn.k_proj.weight", []int{nkv * hd, H}},
			{"self_attn.v_proj.weight", []int{nkv * hd, H}}, {"self_attn.o_proj.weight", []int{H, nh * hd}},
			{"mlp.gate_proj.weight", []int{I, H}}, {"mlp.up_proj.weight", []int{I, H}}, {"mlp.down_proj.weight", []int{H, I}},
		} {
			if err := add(p+t.n, t.dims...); err != nil {
				return err
			}
		}
	}
	if err := add("model.norm.weight", H); err != nil {
		return err
	}
	if tied, _ := shape["tie_word_embeddings"].(bool); !tied {
		if err := add("lm_head.weight", V, H); err != nil {
			return err
		}
	}
	b, _ := json.MarshalIndent(cfg, "", "  ")
	if err := w.WriteFile("config.json", b); err != nil {
		return err
	}
	return w.Commit()
}

// writeSyntheticQuant writes a LlamaForCausalLM whose linear layers are
// stored in spec's format (GPTQ or FP4) with uniformly random codes and
// random scales (|w| around 0.02, like writeSynthetic's), BF16 embedding,
// head and norms. The layers of each transformer block are generated in
// parallel.
func writeSyntheticQuant(dir string, shape map[string]any, spec quant.Spec) error {
	w, err := hf.NewWriter(dir, true)
	if err != nil {
		return err
	}
	defer w.Abort()
	H, I, V, L := shape["hidden_size"].(int), shape["intermediate_size"].(int), shape["vocab_size"].(int), shape["num_hidden_layers"].(int)
	hd, nh, nkv := shape["head_dim"].(int), shape["num_attention_heads"].(int), shape["num_key_value_heads"].(int)
	cfg := map[string]any{"architectures": []string{"LlamaForCausalLM"}, "model_type": "llama",
		"hidden_act": "silu", "max_position_embeddings": 4096, "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
		"bos_token_id": 1, "eos_token_id": 2, "torch_dtype": "bfloat16", "quantization_config": quant.ConfigFor(spec).JSON()}
	for k, v := range shape {
		cfg[k] = v
	}
	bf16 := func(name string, seed uint64, norm bool, dims ...int) safetensors.Tensor {
		n := dims[0]
		if len(dims) == 2 {
			n *= dims[1]
		}
		data := make([]byte, 2*n)
		parallelChunks(n, func(c0, c1 int) {
			rng := rand.New(rand.NewPCG(seed, uint64(c0)))
			for i := c0; i < c1; i++ {
				v := 0.07 * (rng.Float32() - 0.5)
				if norm {
					v = 1 + 0.1*(rng.Float32()-0.5)
				}
				h := dtype.F32ToBF16(v)
				data[2*i], data[2*i+1] = byte(h), byte(h>>8)
			}
		})
		return safetensors.Tensor{Name: name, DType: dtype.BF16, Shape: dims, Data: data}
	}
	linear := func(prefix string, seed uint64, out, in int) ([]safetensors.Tensor, error) {
		g := spec.Group
		if g <= 0 {
			g = in
		}
		c := &quant.Codes{Format: spec.Format, Out: out, In: in, Group: g, Q: make([]uint8, out*in)}
		levels := 16
		if spec.Format == quant.GPTQ {
			c.Bits, c.Sym = spec.Bits, spec.Sym
			if !spec.V2 {
				c.ZeroOffset = 1
			}
			levels = 1 << spec.Bits
			c.Zeros = make([]int32, (in/g)*out)
			for i := range c.Zeros {
				c.Zeros[i] = int32(levels / 2)
			}
		}
		rng := rand.New(rand.NewPCG(seed, 0))
		c.Scales = make([]float32, (in/g)*out)
		for i := range c.Scales {
			// |w| ≤ 0.035 as writeSynthetic's: (levels/2)·s ≈ 0.035
			c.Scales[i] = dtype.F16ToF32(dtype.F32ToF16(float32(0.035 / float64(levels/2) * (0.8 + 0.4*rng.Float64()))))
			if spec.Format == quant.FP4 {
				c.Scales[i] = dtype.F16ToF32(dtype.F32ToF16(float32(0.035 / 6 * (0.8 + 0.4*rng.Float64()))))
			}
		}
		parallelChunks(len(c.Q), func(c0, c1 int) {
			r := rand.New(rand.NewPCG(seed, uint64(c0)+1))
			for i := c0; i < c1; i++ {
				c.Q[i] = uint8(r.IntN(levels))
			}
		})
		qw, err := quant.Pack(prefix, c)
		if err != nil {
			return nil, err
		}
		return qw.Tensors(prefix), nil
	}
	if err := w.AddTensor(bf16("model.embed_tokens.weight", 1, false, V, H)); err != nil {
		return err
	}
	projs := []struct {
		n       string
		out, in int
	}{
		{"self_attn.q_proj", nh * hd, H}, {"self_attn.k_proj", nkv * hd, H}, {"self_attn.v_proj", nkv * hd, H},
		{"self_attn.o_proj", H, nh * hd}, {"mlp.gate_proj", I, H}, {"mlp.up_proj", I, H}, {"mlp.down_proj", H, I},
	}
	for l := range L {
		p := fmt.Sprintf("model.layers.%d.", l)
		out := make([][]safetensors.Tensor, len(projs))
		errs := make([]error, len(projs))
		var wg sync.WaitGroup
		for i, pr := range projs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				out[i], errs[i] = linear(p+pr.n, uint64(1000*l+i+10), pr.out, pr.in)
			}()
		}
		wg.Wait()
		for i := range projs {
			if errs[i] != nil {
				return errs[i]
			}
			for _, t := range out[i] {
				if err := w.AddTensor(t); err != nil {
					return err
				}
			}
		}
		for _, t := range []safetensors.Tensor{bf16(p+"input_layernorm.weight", uint64(1000*l+8), true, H),
			bf16(p+"post_attention_layernorm.weight", uint64(1000*l+9), true, H)} {
			if err := w.AddTensor(t); err != nil {
				return err
			}
		}
	}
	if err := w.AddTensor(bf16("model.norm.weight", 2, true, H)); err != nil {
		return err
	}
	if tied, _ := shape["tie_word_embeddings"].(bool); !tied {
		if err := w.AddTensor(bf16("lm_head.weight", 3, false, V, H)); err != nil {
			return err
		}
	}
	b, _ := json.MarshalIndent(cfg, "", "  ")
	if err := w.WriteFile("config.json", b); err != nil {
		return err
	}
	return w.Commit()
}

// parallelChunks calls f on chunks [c0, c1) of [0, n), 1M at a time, on
// every core.
func parallelChunks(n int, f func(c0, c1 int)) {
	const chunk = 1 << 20
	var wg sync.WaitGroup
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	for c0 := 0; c0 < n; c0 += chunk {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			f(c0, min(n, c0+chunk))
		}()
	}
	wg.Wait()
}
