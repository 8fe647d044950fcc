package safetensors

import "github.com/marlin-llm/marlin/dtype"

// Tensor is one named tensor of a checkpoint: its element type, its shape
// (outermost dimension first) and its little-endian bytes. When it comes
// from File.Tensor, Data aliases the memory-mapped file and must not be
// modified.
type Tensor struct {
	Name  string
	DType dtype.DType
	Shape []int
	Data  []byte
	// Mapped says Data aliases a file mapping (not the Go heap), whose
	// pages may be released once the bytes have been copied elsewhere
	// (internal/pages).
	Mapped bool
}

// NumElements returns the product of the shape's dimensions (1 for a scalar).
func (t Tensor) NumElements() int {
	n := 1
	for _, d := range t.Shape {
		n *= d
	}
	return n
}
