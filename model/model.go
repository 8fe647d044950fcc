// Package model holds the transformer architectures, one file per family,
// each a forward pass written once over the backend's operations:
//
//	llama.go    LlamaForCausalLM, Qwen3ForCausalLM, MixtralForCausalLM,
//	            Qwen3MoeForCausalLM (grouped-query attention; dense or MoE FFN)
//	deepseek.go DeepseekV3ForCausalLM, Glm4MoeLiteForCausalLM (multi-head
//	            latent attention with a latent KV cache; routed + shared experts)
//	ffn.go      the feed-forward blocks: SwiGLU and mixtures of experts
//
// Load reads a Hugging Face folder (config.json + safetensors), picks the
// architecture from config.json's "architectures" and maps every weight
// onto the backend without expanding it to float32.
package model

import (
	"fmt"
	"sort"
	"strings"

	"github.com/marlin-llm/marlin/backend"
	"github.com/marlin-llm/marlin/format/hf"
	"github.com/marlin-llm/marlin/quant"
)

// Model is a loaded causal language model.
type Model interface {
	// Info describes the model.
	Info() *Info
	// Forward runs one batch through the model, storing its keys and values
	// in cache, and returns the logits of the batch rows listed in rows as a
	// [len(rows), vocab] tensor (valid until the next Forward).
	Forward(b *backend.Batch, cache backend.KVCache, rows []int32) backend.Tensor
	// Close releases the weights (and the memory-mapped checkpoint).
	Close() error
}

// Info is what callers need to know about a loaded model.
type Info struct {
	Architecture  string
	Vocab         int
	ContextLength int   // max_position_embeddings
	BOS           int32 // -1 when the config names none
	EOS           []int32
	Layers        int
	Hidden        int
	// KV is the shape of one token's cache entry (Blocks and BlockSize are
	// left for the caller to choose).
	KV backend.KVSpec
	// WeightBytes is the size of all weights as stored on the backend.
	WeightBytes int64
	// DecodeBytes is what one decode step reads from the weights: every
	// matrix but the embedding table (of which it reads one row), unless the
	// table doubles as the output head; of the routed experts, the TopK/E
	// share one token uses (on average: a batch reads more).
	DecodeBytes int64
	// Params counts the weight values.
	Params int64
	// Formats counts the matrices per storage format ("BF16", "gptq int4 g128" ...).
	Formats map[string]int
}

// constructor builds an architecture from an opened checkpoint.
type constructor func(ck *hf.Checkpoint, be backend.Backend, q *quant.Config) (Model, error)

var architectures = map[string]constructor{
	"LlamaForCausalLM":       newLlama,
	"Qwen3ForCausalLM":       newLlama,
	"MixtralForCausalLM":     newLlama,
	"Qwen3MoeForCausalLM":    newLlama,
	"DeepseekV3ForCausalLM":  newDeepSeek,
	"Glm4MoeLiteForCausalLM": newDeepSeek,
}

// Architectures lists the supported values of config.json's "architectures".
func Architectures() []string {
	var names []string
	for n := range architectures {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Load opens the Hugging Face model folder dir and loads its weights onto be.
func Load(dir string, be backend.Backend) (Model, error) {
	ck, err := hf.Open(dir)
	if err != nil {
		return nil, err
	}
	m, err := FromCheckpoint(ck, be)
	if err != nil {
		ck.Close()
		return nil, err
	}
	return m, nil
}

// FromCheckpoint loads the model of an opened checkpoint, which the model
// then owns (Model.Close closes it).
func FromCheckpoint(ck *hf.Checkpoint, be backend.Backend) (Model, error) {
	arch := ck.Config.Architecture()
	newModel, ok := architectures[arch]
	if !ok {
		if arch == "" {
			return nil, fmt.Errorf("%s: config.json names no architecture", ck.Dir)
		}
		return nil, fmt.Errorf("%s: unsupported architecture %q (supported: %s)", ck.Dir, arch, strings.Join(Architectures(), ", "))
	}
	q, err := quant.ParseConfig(ck.Config.QuantizationConfig)
	if err != nil {
		return nil, fmt.Errorf("%s: config.json: %w", ck.Dir, err)
	}
	return newModel(ck, be, q)
}
