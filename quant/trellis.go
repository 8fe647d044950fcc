package quant

import (
	"fmt"
	"math"
	"runtime"
	"sync"
)

// The EXL3 / QTIP bitshift trellis. A tile of TileLen = 256 weights is
// stored as 256·K bits (K = 1…8 bits per weight), a circular bit stream
// read most significant bit first: weight t's state is the 16 bits that
// end at stream bit (t+1)·K, modulo 256·K, so
//
//	state_t = ((state_{t−1} << K) | c_t) & 0xFFFF
//
// where c_t is stream bits [t·K, (t+1)·K) and state_{−1} = state_255
// (tail-biting: the first state borrows the stream's last 16−K bits). The
// weight's value is Codebook.Decode(state_t).
//
// A sequence of states is consistent when state_t >> K equals
// state_{t−1} mod 2^(16−K) for every t, circularly. The encoder (Viterbi)
// finds the consistent sequence closest to a tile in squared error.

// TileLen is the number of weights in a trellis tile (16 × 16).
const TileLen = 256

// MaxTrellisBits is the largest K (bits per weight) a trellis holds.
const MaxTrellisBits = 8

// TensorCoreOrder maps position e of a tile's trellis sequence to the
// element row·16 + col of the row-major 16×16 tile (row = input feature
// within the tile, col = output feature): the m16n8k16 B-fragment order of
// exllamav3's kernels, lane = e/8, j = e%8:
//
//	row = 2·(lane%4) + (j&1) + 8·((j>>1)&1),  col = lane/4 + 8·(j>>2)
var TensorCoreOrder = func() (p [TileLen]uint8) {
	for e := range p {
		lane, j := e/8, e%8
		row := 2*(lane%4) + j&1 + 8*(j>>1&1)
		col := lane/4 + 8*(j>>2)
		p[e] = uint8(row*16 + col)
	}
	return
}()

// PackTile writes the stream of a consistent state sequence into dst,
// 16·K little-endian int16 words as exllamav3 stores them: the stream's
// 16-bit words MSB first, each aligned pair swapped (so that word pairs
// read as little-endian uint32s hold 32 stream bits MSB first). Only the
// low K bits of each state are stored; the others are implied by
// consistency.
func PackTile(dst []byte, states *[TileLen]uint16, K int) {
	nw := 16 * K
	dst = dst[:2*nw]
	clear(dst)
	mask := uint32(1)<<uint(K) - 1
	for t, s := range states {
		c := uint32(s) & mask
		for b := K - 1; b >= 0; b-- {
			if c>>uint(b)&1 == 0 {
				continue
			}
			p := t*K + (K - 1 - b) // stream bit index
			word, bit := p/16, 15-p%16
			word ^= 1 // the swapped pair
			dst[2*word+bit/8] |= 1 << uint(bit%8)
		}
	}
}

// UnpackTile reads the 256 states of the packed tile src (16·K int16
// words). It does not validate anything: every bit pattern is a valid
// tile.
func UnpackTile(states *[TileLen]uint16, src []byte, K int) {
	var words [2 * MaxTrellisBits * 4]uint32 // 8K uint32 words
	nw := 8 * K
	for i := 0; i < nw; i++ {
		words[i] = uint32(src[4*i]) | uint32(src[4*i+1])<<8 | uint32(src[4*i+2])<<16 | uint32(src[4*i+3])<<24
	}
	total := TileLen * K
	for t := range states {
		start := (t+1)*K - 16
		if start < 0 {
			start += total
		}
		i0 := start / 32
		i1 := i0 + 1
		if i1 == nw {
			i1 = 0
		}
		v := uint64(words[i0])<<32 | uint64(words[i1])
		states[t] = uint16(v >> uint(48-start%32))
	}
}

// Consistent reports whether the state sequence is a valid tail-biting
// trellis path for K bits per weight.
func Consistent(states *[TileLen]uint16, K int) bool {
	mask := uint16(1)<<uint(16-K) - 1
	prev := states[TileLen-1]
	for _, s := range states {
		if s>>uint(K) != prev&mask {
			return false
		}
		prev = s
	}
	return true
}

// viterbi holds one goroutine's scratch for encoding tiles.
type viterbi struct {
	K    int
	val  []float32 // codebook table
	cost [2][]float32
	bp   []uint8 // backpointers: TileLen × 2^(16−K) top-K-bit choices
}

func newViterbi(K int, cb Codebook) *viterbi {
	ne := 1 << uint(16-K)
	return &viterbi{K: K, val: cb.Table(), cost: [2][]float32{make([]float32, ne), make([]float32, ne)},
		bp: make([]uint8, TileLen*ne)}
}

// The tail-biting search (exllamav3's): a first, free Viterbi pass over
// the ring started passLag positions before position 0 and running
// passLead positions past it is traced back from its best end to the
// state entering position 0; a second pass over positions 0…255 starts
// from that node and is forced to end in it, which closes the ring. A
// shorter first pass (96 + 64 steps) costs 0.3% more squared error on a
// Gaussian source; more candidate start nodes (traced back from the 64
// best ends) gain nothing measurable.
const (
	passLag  = TileLen / 2
	passLead = TileLen / 2
)

// encode finds the consistent state sequence closest to x (a tile in
// trellis order) in squared error with the two-pass tail-biting search
// above and returns the squared error of the states it chose.
func (v *viterbi) encode(states *[TileLen]uint16, x *[TileLen]float32) float64 {
	K := v.K
	ne := 1 << uint(16-K)
	// pass 1: positions 256−passLag … 255, 0 … passLead−1; free start
	steps := passLag + passLead
	v.forward(x, TileLen-passLag, -1, steps)
	end := argminF32(v.cost[(steps-1)&1][:ne])
	// trace back to the node entering ring position 0 (step passLag)
	e := end
	for i := steps - 1; i >= passLag; i-- {
		h := int(v.bp[i*ne+e])
		w := h<<uint(16-K) | e
		e = w >> uint(K)
	}
	start := e
	// pass 2: positions 0 … 255 from start, ending in start
	v.forward(x, 0, start, TileLen)
	e = start
	for i := TileLen - 1; i >= 0; i-- {
		h := int(v.bp[i*ne+e])
		w := h<<uint(16-K) | e
		states[i] = uint16(w)
		e = w >> uint(K)
	}
	var err float64
	for i, s := range states {
		d := float64(v.val[s]) - float64(x[i])
		err += d * d
	}
	return err
}

// forward runs the Viterbi recursion over the sequence x[(i+roll)%256],
// i = 0…steps−1, leaving step i's costs in v.cost[i&1] and its
// backpointers in v.bp[i·2^(16−K):]. The node entering step 0 is free when
// start < 0, else fixed to start.
func (v *viterbi) forward(x *[TileLen]float32, roll, start, steps int) {
	K := v.K
	Kr := uint(16 - K)
	ne := 1 << Kr
	c0 := v.cost[0][:ne]
	inf := float32(math.Inf(1))
	if start < 0 {
		// every window is a possible first state: cost = its error
		xv := x[roll%TileLen]
		for e := range c0 {
			c0[e] = inf
		}
		for h := 0; h < 1<<uint(K); h++ {
			base := h << Kr
			vals := v.val[base : base+ne]
			bp := v.bp[:ne]
			for e, val := range vals {
				d := val - xv
				if c := d * d; c < c0[e] {
					c0[e] = c
					bp[e] = uint8(h)
				}
			}
		}
	} else {
		for e := range c0 {
			c0[e] = inf
		}
		xv := x[roll%TileLen]
		for c := 0; c < 1<<uint(K); c++ {
			w := start<<uint(K) | c
			e := w & (ne - 1)
			d := v.val[w] - xv
			c0[e] = d * d
			v.bp[e] = uint8(w >> Kr)
		}
	}
	for i := 1; i < steps; i++ {
		step(v.cost[i&1][:ne], v.bp[i*ne:(i+1)*ne], v.cost[(i-1)&1][:ne], v.val, x[(i+roll)%TileLen], K)
	}
}

// stepGeneric is one Viterbi step in plain Go: for every node e (the low
// 16−K bits of this step's state), next[e] = min over the top K bits h of
// (val[w] − x)² + prev[w >> K] with w = h<<(16−K) | e, and bp[e] = the
// minimizing h (the smallest on ties).
func stepGeneric(next []float32, bp []uint8, prev, val []float32, x float32, K int) {
	Kr := uint(16 - K)
	ne := 1 << Kr
	next, bp = next[:ne], bp[:ne]
	p := prev[:ne>>uint(K)]
	v := val[:ne]
	for e := range next {
		d := v[e] - x
		next[e] = d*d + p[e>>uint(K)]
		bp[e] = 0
	}
	for h := 1; h < 1<<uint(K); h++ {
		v := val[h<<Kr : (h+1)<<Kr][:ne]
		p := prev[h<<(Kr-uint(K)) : (h+1)<<(Kr-uint(K))]
		hb := uint8(h)
		for e := range next {
			d := v[e] - x
			c := d*d + p[e>>uint(K)]
			if c < next[e] {
				next[e] = c
				bp[e] = hb
			}
		}
	}
}

func argminF32(c []float32) int {
	best, bi := float32(math.Inf(1)), 0
	for i, v := range c {
		if v < best {
			best, bi = v, i
		}
	}
	return bi
}

// viterbiPools keeps scratch per (K, codebook): the backpointers are
// 2^(24−K) bytes.
var viterbiPools [MaxTrellisBits + 1][numCodebooks]sync.Pool

func getViterbi(K int, cb Codebook) *viterbi {
	if v, ok := viterbiPools[K][cb].Get().(*viterbi); ok {
		return v
	}
	return newViterbi(K, cb)
}

// TileEncoder runs the search of EncodeTiles elsewhere, on a GPU
// (backend/cuda's Backend.EncodeTiles): it writes the states of the tiles
// of x, and must choose exactly the states the CPU search chooses for the
// same input.
type TileEncoder func(states []uint16, x []float32, K int, cb Codebook) error

// GPUMinTiles is the smallest batch EncodeTiles hands to a TileEncoder.
var GPUMinTiles = 32

// decodeStates writes the values of states into decoded (when not nil)
// and returns the squared error against x, summed per tile as encode does.
func decodeStates(states []uint16, decoded, x []float32, cb Codebook) float64 {
	val := cb.Table()
	var total float64
	for i := 0; i < len(x); i += TileLen {
		var err float64
		for j, s := range states[i : i+TileLen] {
			v := val[s]
			if decoded != nil {
				decoded[i+j] = v
			}
			d := float64(v) - float64(x[i+j])
			err += d * d
		}
		total += err
	}
	return total
}

// EncodeTiles encodes n = len(x)/256 tiles (each 256 values in trellis
// order) with K bits per weight and codebook cb, in parallel on up to
// workers goroutines (0: GOMAXPROCS). It writes each tile's states to
// states[i·256:] and, when decoded is not nil, their values to
// decoded[i·256:], and returns the total squared error. With gpu not nil,
// batches of at least GPUMinTiles tiles with K ≥ 2 are searched by gpu
// instead (on its error, by the CPU).
func EncodeTiles(states []uint16, decoded, x []float32, K int, cb Codebook, workers int, gpu TileEncoder) (float64, error) {
	if K < 1 || K > MaxTrellisBits {
		return 0, fmt.Errorf("quant: trellis bits %d out of range [1, %d]", K, MaxTrellisBits)
	}
	if cb >= numCodebooks {
		return 0, fmt.Errorf("quant: unknown codebook %d", cb)
	}
	if len(x)%TileLen != 0 || len(states) != len(x) || (decoded != nil && len(decoded) != len(x)) {
		return 0, fmt.Errorf("quant: EncodeTiles: %d values, %d states, %d decoded (want equal multiples of %d)", len(x), len(states), len(decoded), TileLen)
	}
	for i, v := range x {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return 0, fmt.Errorf("quant: EncodeTiles: value %d is %g", i, v)
		}
	}
	n := len(x) / TileLen
	if gpu != nil && n >= GPUMinTiles && K >= 2 {
		if err := gpu(states, x, K, cb); err == nil {
			return decodeStates(states, decoded, x, cb), nil
		}
		// on error, the CPU search below
	}
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	workers = min(workers, n)
	var mu sync.Mutex
	var total float64
	var next int
	var wg sync.WaitGroup
	val := cb.Table()
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v := getViterbi(K, cb)
			defer viterbiPools[K][cb].Put(v)
			var sum float64
			for {
				mu.Lock()
				i := next
				next++
				mu.Unlock()
				if i >= n {
					break
				}
				st := (*[TileLen]uint16)(states[i*TileLen : (i+1)*TileLen])
				sum += v.encode(st, (*[TileLen]float32)(x[i*TileLen:(i+1)*TileLen]))
				if decoded != nil {
					for j, s := range st {
						decoded[i*TileLen+j] = val[s]
					}
				}
			}
			mu.Lock()
			total += sum
			mu.Unlock()
		}()
	}
	wg.Wait()
	return total, nil
}
