package safetensors

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/marlin-llm/marlin/dtype"
)

// BenchmarkWriteOpen writes 1 GiB in 64 tensors and opens the result,
// reporting the write throughput.
func BenchmarkWriteOpen(b *testing.B) {
	const n, size = 64, 4 << 20 // 64 tensors of 4 Mi F32
	data := make([]byte, size*4)
	for i := range data {
		data[i] = byte(i * 7)
	}
	path := filepath.Join(b.TempDir(), "bench.safetensors")
	b.SetBytes(n * size * 4)
	for i := 0; i < b.N; i++ {
		w, err := Create(path)
		if err != nil {
			b.Fatal(err)
		}
		for k := 0; k < n; k++ {
			if err := w.Add(Tensor{Name: fmt.Sprint("t", k), DType: dtype.F32, Shape: []int{size}, Data: data}); err != nil {
				b.Fatal(err)
			}
		}
		if err := w.Close(); err != nil {
			b.Fatal(err)
		}
		f, err := Open(path)
		if err != nil {
			b.Fatal(err)
		}
		f.Close()
	}
}
