// Package defaultmodel embeds marlin's default model in the binary: a small
// Llama trained on tiny Shakespeare (scripts/device/train_default_model.py,
// trained weights in source/) and quantized by `marlin quantize source
// model --method gptq --format int4 --group 32` (calibrated on the start of
// tiny Shakespeare, part of its training split) into model/.
// It lets `marlin run` and `marlin serve` work offline with no arguments.
package defaultmodel

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
)

//go:embed model
var files embed.FS

// Name is the model's name as the server reports it.
const Name = "marlin-shakespeare"

// Dir returns a folder holding the default model's files, writing them
// once to the user's cache directory (or the temporary directory) under a
// name derived from their contents.
func Dir() (string, error) {
	names, err := fs.Glob(files, "model/*")
	if err != nil {
		return "", err
	}
	sort.Strings(names)
	h := sha256.New()
	for _, n := range names {
		data, err := files.ReadFile(n)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s %d\n", n, len(data))
		h.Write(data)
	}
	sum := hex.EncodeToString(h.Sum(nil))[:16]
	base, err := os.UserCacheDir()
	if err != nil || os.MkdirAll(base, 0o755) != nil {
		base = os.TempDir()
	}
	dir := filepath.Join(base, "marlin", "default-"+sum)
	if _, err := os.Stat(filepath.Join(dir, "config.json")); err == nil {
		return dir, nil
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return "", fmt.Errorf("default model: %w", err)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), "default-*.tmp")
	if err != nil {
		return "", fmt.Errorf("default model: %w", err)
	}
	defer os.RemoveAll(tmp)
	for _, n := range names {
		data, _ := files.ReadFile(n)
		if err := os.WriteFile(filepath.Join(tmp, filepath.Base(n)), data, 0o644); err != nil {
			return "", fmt.Errorf("default model: %w", err)
		}
	}
	if err := os.Rename(tmp, dir); err != nil {
		// another process may have won the race
		if _, serr := os.Stat(filepath.Join(dir, "config.json")); serr == nil {
			return dir, nil
		}
		return "", fmt.Errorf("default model: %w", err)
	}
	return dir, nil
}
