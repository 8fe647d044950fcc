//go:build !linux || nocuda

package cuda

import (
	"errors"
	"fmt"

	"github.com/marlin-llm/marlin/backend"
	"github.com/marlin-llm/marlin/quant"
)

// Backend stands in for the CUDA backend in builds with the nocuda tag
// (which leave out purego and so stay statically linked) and on systems
// other than Linux, where the backend is not built. It is never created:
// New always fails.
type Backend struct{ backend.Backend }

// ErrUnavailable is matched (errors.Is) by the error New returns when the
// backend cannot run; with the nocuda tag, always.
var ErrUnavailable = errors.New("CUDA unavailable")

// New reports that this binary was built without CUDA support.
func New(ordinal int) (*Backend, error) {
	return nil, fmt.Errorf("this binary was built without CUDA support (tag nocuda, or not Linux): %w", ErrUnavailable)
}

// Describe is never called: New always fails.
func (b *Backend) Describe() string { return "" }

// EncodeTiles is never called: New always fails.
func (b *Backend) EncodeTiles(states []uint16, x []float32, K int, cb quant.Codebook) error {
	return ErrUnavailable
}
