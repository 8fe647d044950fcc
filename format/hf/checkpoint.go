// Package hf reads and writes Hugging Face model folders: config.json,
// generation_config.json and safetensors weights, single-file or sharded
// with a model.safetensors.index.json.
//
// Open memory-maps the weights (see package safetensors) and parses the
// configuration into a Config: a faithful typed view of config.json for the
// Llama, Qwen3, Mixtral, Qwen3-MoE, GLM-4-MoE-Lite and DeepSeek-V3 families
// as transformers 5 defines them, with Rope merging the transformers 4 and 5
// RoPE keys. Writer builds a folder in a temporary sibling directory and
// renames it into place at Commit, so a folder is never seen half-written.
package hf

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/marlin-llm/marlin/format/safetensors"
)

// File names of a model folder.
const (
	ConfigFile           = "config.json"
	GenerationConfigFile = "generation_config.json"
	SingleWeightsFile    = "model.safetensors"
	IndexFile            = "model.safetensors.index.json"
)

// Checkpoint is an open model folder. Tensors alias the memory-mapped
// weight files and stay valid until Close. Its methods may be called from
// several goroutines at once, except Close.
type Checkpoint struct {
	Dir        string
	Config     *Config
	Generation *GenerationConfig // nil when there is no generation_config.json

	files   []*safetensors.File
	byName  map[string]*safetensors.File
	names   []string
	aliases map[string]string
}

// Open opens the model folder dir: config.json (required),
// generation_config.json (optional) and the weights, found in this order:
// model.safetensors.index.json and the shards its weight_map names;
// model.safetensors; every *.safetensors file of the folder. Errors name the
// file and what is wrong with it.
func Open(dir string) (*Checkpoint, error) {
	c := &Checkpoint{Dir: dir, byName: make(map[string]*safetensors.File)}
	if err := c.open(); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func (c *Checkpoint) open() error {
	if fi, err := os.Stat(c.Dir); err != nil {
		return fmt.Errorf("hf: %w", err)
	} else if !fi.IsDir() {
		return fmt.Errorf("hf: %s: not a directory", c.Dir)
	}

	path := filepath.Join(c.Dir, ConfigFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("hf: %s: no %s: not a Hugging Face model folder", c.Dir, ConfigFile)
	} else if err != nil {
		return fmt.Errorf("hf: %w", err)
	}
	if c.Config, err = parseConfig(data); err != nil {
		return fmt.Errorf("hf: %s: %w", path, err)
	}

	path = filepath.Join(c.Dir, GenerationConfigFile)
	if data, err := os.ReadFile(path); err == nil {
		if c.Generation, err = parseGenerationConfig(data); err != nil {
			return fmt.Errorf("hf: %s: %w", path, err)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("hf: %w", err)
	}

	switch {
	case exists(filepath.Join(c.Dir, IndexFile)):
		err = c.openIndexed()
	case exists(filepath.Join(c.Dir, SingleWeightsFile)):
		err = c.openUnindexed([]string{SingleWeightsFile})
	default:
		var names []string
		names, err = globWeights(c.Dir)
		if err == nil {
			err = c.openUnindexed(names)
		}
	}
	if err != nil {
		return err
	}
	c.names = make([]string, 0, len(c.byName))
	for name := range c.byName {
		c.names = append(c.names, name)
	}
	sort.Strings(c.names)
	c.findAliases()
	return nil
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// globWeights lists the folder's *.safetensors files, or explains why there
// are none.
func globWeights(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("hf: %w", err)
	}
	var names []string
	bin := false
	for _, e := range entries {
		n := e.Name()
		switch {
		case strings.HasPrefix(n, "."):
		case strings.HasSuffix(n, ".safetensors") && !e.IsDir():
			names = append(names, n)
		case strings.HasSuffix(n, ".bin") || strings.HasSuffix(n, ".pt") || strings.HasSuffix(n, ".pth"):
			bin = true
		}
	}
	if len(names) == 0 {
		if bin {
			return nil, fmt.Errorf("hf: %s: no safetensors weights, only PyTorch pickle files (*.bin/*.pt), which are not supported: convert them to safetensors", dir)
		}
		return nil, fmt.Errorf("hf: %s: no weights: no %s, no %s and no *.safetensors file", dir, IndexFile, SingleWeightsFile)
	}
	sort.Strings(names)
	return names, nil
}

// openFile opens one weight file of the folder.
func (c *Checkpoint) openFile(name string) (*safetensors.File, error) {
	f, err := safetensors.Open(filepath.Join(c.Dir, name))
	if err != nil {
		return nil, err // names the file already
	}
	c.files = append(c.files, f)
	return f, nil
}

// openUnindexed opens weight files that have no index: a tensor name must
// then appear in only one of them.
func (c *Checkpoint) openUnindexed(names []string) error {
	for _, name := range names {
		f, err := c.openFile(name)
		if err != nil {
			return err
		}
		for _, t := range f.Names() {
			if prev, dup := c.byName[t]; dup {
				return fmt.Errorf("hf: %s: tensor %q is in both %s and %s, and no %s says which to use",
					c.Dir, t, filepath.Base(prev.Path()), name, IndexFile)
			}
			c.byName[t] = f
		}
	}
	return nil
}

// openIndexed opens the shards named by model.safetensors.index.json and
// checks that each holds the tensors the index assigns to it.
func (c *Checkpoint) openIndexed() error {
	path := filepath.Join(c.Dir, IndexFile)
	weightMap, err := readIndex(path)
	if err != nil {
		return fmt.Errorf("hf: %s: %w", path, err)
	}
	byShard := make(map[string][]string)
	for tensor, shard := range weightMap {
		byShard[shard] = append(byShard[shard], tensor)
	}
	shards := make([]string, 0, len(byShard))
	for s := range byShard {
		shards = append(shards, s)
	}
	sort.Strings(shards)
	for _, shard := range shards {
		tensors := byShard[shard]
		sort.Strings(tensors)
		if !exists(filepath.Join(c.Dir, shard)) {
			holding := fmt.Sprintf("%q", tensors[0])
			if len(tensors) > 1 {
				holding += fmt.Sprintf(" and %d more tensors", len(tensors)-1)
			}
			return fmt.Errorf("hf: %s: shard %s (holding %s) does not exist", path, shard, holding)
		}
		f, err := c.openFile(shard)
		if err != nil {
			return err
		}
		for _, t := range tensors {
			if _, ok := f.Info(t); !ok {
				return fmt.Errorf("hf: %s: the index puts tensor %q in %s, which does not contain it", path, t, shard)
			}
			c.byName[t] = f
		}
	}
	// Tensors a shard holds beyond the index are kept when unambiguous.
	extra := make(map[string]*safetensors.File)
	for _, f := range c.files {
		for _, t := range f.Names() {
			if _, indexed := weightMap[t]; indexed {
				continue
			}
			if prev, dup := extra[t]; dup {
				return fmt.Errorf("hf: %s: tensor %q is in both %s and %s but not in the index",
					c.Dir, t, filepath.Base(prev.Path()), filepath.Base(f.Path()))
			}
			extra[t] = f
		}
	}
	for t, f := range extra {
		c.byName[t] = f
	}
	return nil
}

// readIndex reads the weight_map of an index file.
func readIndex(path string) (map[string]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	raw, err := decodeObject(data)
	if err != nil {
		return nil, err
	}
	wm, ok := raw["weight_map"]
	if !ok || isNull(wm) {
		return nil, errors.New(`no "weight_map"`)
	}
	var entries map[string]json.RawMessage
	if err := json.Unmarshal(wm, &entries); err != nil || entries == nil {
		return nil, fmt.Errorf(`"weight_map" must be an object of tensor name to file name, got %s`, describe(wm))
	}
	if len(entries) == 0 {
		return nil, errors.New(`"weight_map" is empty`)
	}
	weightMap := make(map[string]string, len(entries))
	for tensor, v := range entries {
		var shard string
		if err := json.Unmarshal(v, &shard); err != nil {
			return nil, fmt.Errorf(`"weight_map": tensor %q: want a file name, got %s`, tensor, describe(v))
		}
		if !filepath.IsLocal(shard) || strings.ContainsRune(shard, '\\') {
			return nil, fmt.Errorf(`"weight_map": tensor %q: file name %q leaves the model folder`, tensor, shard)
		}
		weightMap[tensor] = filepath.Clean(shard)
	}
	return weightMap, nil
}

// findAliases records tensors that a weight file's metadata declares as
// copies of a stored tensor, as torch's safetensors save_model does for tied
// weights ({"model.embed_tokens.weight": "lm_head.weight"}).
func (c *Checkpoint) findAliases() {
	for _, f := range c.files {
		for k, v := range f.Metadata() {
			if _, stored := c.byName[k]; stored || k == v {
				continue
			}
			if _, target := c.byName[v]; target {
				if c.aliases == nil {
					c.aliases = make(map[string]string)
				}
				c.aliases[k] = v
			}
		}
	}
}

// Tensor returns the named tensor. Names the weight files' metadata declares
// as aliases of a stored tensor (tied weights saved once) resolve to it, with
// Name set to the requested name. Data aliases the mapping of the weight file
// and must not be modified.
func (c *Checkpoint) Tensor(name string) (safetensors.Tensor, bool) {
	if f, ok := c.byName[name]; ok {
		return f.Tensor(name)
	}
	if target, ok := c.aliases[name]; ok {
		t, ok := c.byName[target].Tensor(target)
		t.Name = name
		return t, ok
	}
	return safetensors.Tensor{}, false
}

// Info returns the header entry of the named stored tensor.
func (c *Checkpoint) Info(name string) (safetensors.TensorInfo, bool) {
	if f, ok := c.byName[name]; ok {
		return f.Info(name)
	}
	return safetensors.TensorInfo{}, false
}

// Names returns the names of the stored tensors, sorted (aliases excluded).
func (c *Checkpoint) Names() []string { return append([]string(nil), c.names...) }

// Aliases returns the alias → stored tensor names declared in the weight
// files' metadata (nil when there are none).
func (c *Checkpoint) Aliases() map[string]string {
	if c.aliases == nil {
		return nil
	}
	m := make(map[string]string, len(c.aliases))
	for k, v := range c.aliases {
		m[k] = v
	}
	return m
}

// Files returns the paths of the open weight files.
func (c *Checkpoint) Files() []string {
	paths := make([]string, len(c.files))
	for i, f := range c.files {
		paths[i] = f.Path()
	}
	return paths
}

// Close closes the weight files; tensors obtained before must not be used
// afterwards. Closing twice is harmless.
func (c *Checkpoint) Close() error {
	var first error
	for _, f := range c.files {
		if err := f.Close(); err != nil && first == nil {
			first = err
		}
	}
	c.files = nil
	c.byName = map[string]*safetensors.File{}
	c.aliases = nil
	c.names = nil
	return first
}
