package safetensors

import (
	"encoding/binary"
	"fmt"
	"math"
	"unsafe"

	"github.com/marlin-llm/marlin/dtype"
)

// littleEndian reports whether the host stores numbers little-endian, as the
// format does; zero-copy views are only possible then.
var littleEndian = func() bool {
	x := uint16(1)
	return *(*byte)(unsafe.Pointer(&x)) == 1
}()

// checkSize verifies that Data holds exactly shape × element size bytes.
func (t Tensor) checkSize() error {
	size := t.DType.Size()
	if size == 0 {
		return fmt.Errorf("safetensors: tensor %q: invalid dtype %v", t.Name, t.DType)
	}
	for i, d := range t.Shape {
		if d < 0 {
			return fmt.Errorf("safetensors: tensor %q: shape %v: dimension %d is negative", t.Name, t.Shape, i)
		}
	}
	n, ok := byteSize(t.DType, t.Shape)
	if !ok {
		return fmt.Errorf("safetensors: tensor %q: shape %v × %v overflows", t.Name, t.Shape, t.DType)
	}
	if n != uint64(len(t.Data)) {
		return fmt.Errorf("safetensors: tensor %q: shape %v × %v (%d bytes each) = %d bytes, but Data holds %d",
			t.Name, t.Shape, t.DType, size, n, len(t.Data))
	}
	return nil
}

// Float32s converts the tensor's elements to a new []float32. It accepts
// F32, F16, BF16, F64 (rounded to nearest), F8_E4M3 and F8_E5M2, aligned or
// not. It is meant for small tensors such as norm weights and biases: the
// result lives in the Go heap.
func (t Tensor) Float32s() ([]float32, error) {
	if err := t.checkSize(); err != nil {
		return nil, err
	}
	d := t.Data
	switch t.DType {
	case dtype.F32:
		out := make([]float32, len(d)/4)
		if v, ok := t.Float32View(); ok {
			copy(out, v)
			return out, nil
		}
		for i := range out {
			out[i] = math.Float32frombits(binary.LittleEndian.Uint32(d[4*i:]))
		}
		return out, nil
	case dtype.F16:
		out := make([]float32, len(d)/2)
		for i := range out {
			out[i] = dtype.F16ToF32(binary.LittleEndian.Uint16(d[2*i:]))
		}
		return out, nil
	case dtype.BF16:
		out := make([]float32, len(d)/2)
		for i := range out {
			out[i] = dtype.BF16ToF32(binary.LittleEndian.Uint16(d[2*i:]))
		}
		return out, nil
	case dtype.F64:
		out := make([]float32, len(d)/8)
		for i := range out {
			out[i] = float32(math.Float64frombits(binary.LittleEndian.Uint64(d[8*i:])))
		}
		return out, nil
	case dtype.F8E4M3:
		out := make([]float32, len(d))
		for i, b := range d {
			out[i] = dtype.E4M3ToF32(b)
		}
		return out, nil
	case dtype.F8E5M2:
		// e5m2 is the upper byte of an IEEE binary16.
		out := make([]float32, len(d))
		for i, b := range d {
			out[i] = dtype.F16ToF32(uint16(b) << 8)
		}
		return out, nil
	}
	return nil, fmt.Errorf("safetensors: tensor %q: cannot convert %v to float32", t.Name, t.DType)
}

// Float32View returns the data of an F32 tensor as a []float32 sharing its
// memory, without copying. It returns false when the tensor is not F32, when
// Data is not 4-byte aligned or not a whole number of elements, or on a
// big-endian host; use Float32s then. A view of a tensor from File.Tensor is
// read-only.
func (t Tensor) Float32View() ([]float32, bool) {
	if t.DType != dtype.F32 {
		return nil, false
	}
	p, n, ok := view(t.Data, 4)
	if !ok {
		return nil, false
	}
	if n == 0 {
		return []float32{}, true
	}
	return unsafe.Slice((*float32)(p), n), true
}

// Uint16s returns the raw 16-bit elements of an F16 or BF16 tensor as a
// []uint16 sharing its memory, without copying. It returns false for other
// dtypes, when Data is not 2-byte aligned or not a whole number of elements,
// or on a big-endian host. A view of a tensor from File.Tensor is read-only.
func (t Tensor) Uint16s() ([]uint16, bool) {
	if t.DType != dtype.F16 && t.DType != dtype.BF16 {
		return nil, false
	}
	p, n, ok := view(t.Data, 2)
	if !ok {
		return nil, false
	}
	if n == 0 {
		return []uint16{}, true
	}
	return unsafe.Slice((*uint16)(p), n), true
}

// view checks that b can be reinterpreted as elements of the given size and
// returns its start and element count.
func view(b []byte, size int) (unsafe.Pointer, int, bool) {
	if !littleEndian || len(b)%size != 0 {
		return nil, 0, false
	}
	if len(b) == 0 {
		return nil, 0, true
	}
	p := unsafe.Pointer(unsafe.SliceData(b))
	if uintptr(p)%uintptr(size) != 0 {
		return nil, 0, false
	}
	return p, len(b) / size, true
}

// Aligned reports whether Data starts at an address that is a multiple of
// the element size, so that it can be reinterpreted in place.
func (t Tensor) Aligned() bool {
	size := t.DType.Size()
	if size == 0 {
		return false
	}
	if len(t.Data) == 0 {
		return true
	}
	return uintptr(unsafe.Pointer(unsafe.SliceData(t.Data)))%uintptr(size) == 0
}
