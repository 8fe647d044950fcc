package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/marlin-llm/marlin/backend"
	"github.com/marlin-llm/marlin/backend/cpu"
	"github.com/marlin-llm/marlin/backend/cuda"
	"github.com/marlin-llm/marlin/defaultmodel"
	"github.com/marlin-llm/marlin/dtype"
	"github.com/marlin-llm/marlin/model"
	"github.com/marlin-llm/marlin/tokenizer"
)

// modelOpts are the flags every command that loads a model shares.
type modelOpts struct {
	device  string
	threads int
	verbose bool
}

func addModelFlags(f *flags) *modelOpts {
	o := &modelOpts{}
	f.StringVar(&o.device, "device", "auto", "where to run: cpu, cuda or auto (the best available)")
	f.IntVar(&o.threads, "threads", 0, "CPU threads (0: one per core)")
	f.BoolVar(&o.verbose, "v", false, "print load and speed statistics to stderr")
	return o
}

// newBackend returns the backend the --device flag asks for: "cuda" (or
// "cuda:N" for device N) fails with the reason when CUDA is unusable;
// "auto" takes the first CUDA device when there is one, else the CPU.
func (o *modelOpts) newBackend() (backend.Backend, error) {
	switch {
	case o.device == "cpu":
		return cpu.New(o.threads), nil
	case o.device == "auto" || o.device == "":
		be, err := cuda.New(0)
		if err == nil {
			return be, nil
		}
		if o.verbose {
			fmt.Fprintf(os.Stderr, "not using CUDA: %v\n", err)
		}
		return cpu.New(o.threads), nil
	case o.device == "cuda" || strings.HasPrefix(o.device, "cuda:"):
		n := 0
		if s, ok := strings.CutPrefix(o.device, "cuda:"); ok {
			var err error
			if n, err = strconv.Atoi(s); err != nil || n < 0 {
				return nil, usagef("--device %q: want cuda:N with N a device number", o.device)
			}
		}
		be, err := cuda.New(n)
		if err != nil {
			return nil, fmt.Errorf("--device %s: %w", o.device, err)
		}
		return be, nil
	}
	return nil, usagef("--device %q: want cpu, cuda or auto", o.device)
}

// session is a loaded model with its backend and tokenizer.
type session struct {
	dir string
	be  backend.Backend
	m   model.Model
	tok *tokenizer.Tokenizer // nil when the folder has no tokenizer
}

func (s *session) Close() {
	s.m.Close()
	s.be.Close()
}

// isModelDir reports whether path is a folder holding a config.json.
func isModelDir(path string) bool {
	st, err := os.Stat(filepath.Join(path, "config.json"))
	return err == nil && !st.IsDir()
}

// resolveModel returns the folder to load: dir, or the embedded default
// model when dir is empty.
func resolveModel(dir string) (string, error) {
	if dir != "" {
		return dir, nil
	}
	return defaultmodel.Dir()
}

// open loads the model in dir (the embedded default model when empty).
func (o *modelOpts) open(dir string, needTokenizer bool) (*session, error) {
	dir, err := resolveModel(dir)
	if err != nil {
		return nil, err
	}
	be, err := o.newBackend()
	if err != nil {
		return nil, err
	}
	start := time.Now()
	m, err := model.Load(dir, be)
	if err != nil {
		be.Close()
		return nil, err
	}
	s := &session{dir: dir, be: be, m: m}
	if tokenizerPresent(dir) {
		if s.tok, err = tokenizer.Load(dir); err != nil {
			s.Close()
			return nil, err
		}
	} else if needTokenizer {
		s.Close()
		return nil, fmt.Errorf("%s: no tokenizer.json or tokenizer.model (give token ids with --ids)", dir)
	}
	if o.verbose {
		info := m.Info()
		fmt.Fprintf(os.Stderr, "loaded %s (%s, %d layers, %.1f M params, %.1f MB) on %s in %v\n",
			dir, info.Architecture, info.Layers, float64(info.Params)/1e6, float64(info.WeightBytes)/1e6, be.Name(), time.Since(start).Round(time.Millisecond))
	}
	return s, nil
}

func tokenizerPresent(dir string) bool {
	for _, f := range []string{"tokenizer.json", "tokenizer.model"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
			return true
		}
	}
	return false
}

// addKVTypeFlag adds --kv-type, the element type of the KV cache of
// commands that run the engine; "auto" reads as dtype.Invalid, which
// kvTypeFor resolves once the backend is known.
func addKVTypeFlag(f *flags) func() (dtype.DType, error) {
	kv := f.String("kv-type", "auto", "KV cache numbers: auto (bf16 on a GPU, f32 on the CPU), f32 (exact), f16 or bf16 (half the memory)")
	return func() (dtype.DType, error) {
		switch *kv {
		case "auto":
			return dtype.Invalid, nil
		case "f32":
			return dtype.F32, nil
		case "f16":
			return dtype.F16, nil
		case "bf16":
			return dtype.BF16, nil
		}
		return dtype.Invalid, usagef("--kv-type %q: want auto, f32, f16 or bf16", *kv)
	}
}

// kvTypeFor resolves --kv-type auto (dtype.Invalid) for backend be:
// bfloat16 on a GPU, where attention reads it as fast as a float32 cache
// and half the memory holds twice the tokens (docs/perf.md; the type
// measured there, widened by a shift, and the range of the activations it
// holds), float32 on the CPU, where widening each 16-bit block costs what
// reading fewer bytes saves. Other types are kept.
func kvTypeFor(t dtype.DType, be backend.Backend) dtype.DType {
	if t != dtype.Invalid {
		return t
	}
	if _, ok := be.(*cpu.Backend); ok {
		return dtype.F32
	}
	return dtype.BF16
}
