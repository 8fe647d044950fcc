//go:build linux && !nocuda

package cuda

import (
	"math/rand/v2"
	"testing"
	"unsafe"

	"github.com/marlin-llm/marlin/dtype"
)

// TestXTiles checks x_to_tiles (hopper.cu), the copy of x that wg_qgemm's
// bulk copies read, bit for bit against a plain construction of its layout:
// per step of 32 inputs and 64-token block (padded to whole 128-token
// tiles) 4096 bytes of 8 × 8 core matrices, the MMA's k order inside each
// 16 inputs, tokens past M zero, act-order's permutation applied.
func TestXTiles(t *testing.T) {
	g := gpu(t)
	rng := rand.New(rand.NewPCG(5, 6))
	for _, cs := range []struct {
		M, K int
		perm bool
	}{{1, 64, false}, {64, 96, false}, {100, 4096, false}, {300, 128, true}} {
		M, K := cs.M, cs.K
		xv := randn(rng, M*K, 1)
		x := g.NewTensor(M, K)
		g.Write(x, xv)
		m := &matrix{cols: K}
		var perm []int32
		if cs.perm {
			perm = make([]int32, K)
			for i, p := range rng.Perm(K) {
				perm[i] = int32(p)
			}
			pb := g.NewTensor(1, K)
			g.Write(pb, unsafe.Slice((*float32)(unsafe.Pointer(&perm[0])), K)) // the ints' bits
			m.desc.gidx = g.tensor(pb).ptr()
		}
		g.enter()
		xt := g.xTiles(g.tensor(x).ptr(), K, M, m)
		g.leave()
		mustSync(t, g)
		TB := wgBlocks(M)
		got := make([]uint16, 64*K*TB)
		g.enter()
		g.checkCall(call(g.d.cuMemcpyDtoHAsync, uintptr(unsafe.Pointer(&got[0])), uintptr(xt), uintptr(2*len(got)), g.stream), "cuMemcpyDtoHAsync")
		g.leave()
		mustSync(t, g)
		bad := 0
		for s := range K / 32 {
			for tb := range TB {
				for n8 := range 8 {
					for k8 := range 4 {
						for r := range 8 {
							for e := range 8 {
								o := (s*TB+tb)*2048 + (n8*4+k8)*64 + r*8 + e
								tok, pos := 64*tb+8*n8+r, 8*k8+e
								q := pos % 16
								in := 32*s + 16*(pos/16) + 4*((q%8)/2) + 2*(q/8) + q%2
								if perm != nil {
									in = int(perm[in])
								}
								var want uint16
								if tok < M {
									want = dtype.F32ToF16(xv[tok*K+in])
								}
								if got[o] != want {
									if bad++; bad <= 3 {
										t.Errorf("M %d K %d: element %d (step %d, token %d, position %d): got %#04x, want %#04x", M, K, o, s, tok, pos, got[o], want)
									}
								}
							}
						}
					}
				}
			}
		}
		if bad > 0 {
			t.Errorf("M %d K %d: %d of %d elements differ", M, K, bad, len(got))
		}
	}
}
