// Command gen writes attn_amd64.s, the attention kernels of package
// vkernels (run by go generate in that package):
//
//	go run ./gen -o attn_amd64.s
//
// The kernels are register-blocked loops whose shape (rows, columns,
// accumulator sets) differs per variant, so they are printed from one
// description rather than written out by hand twelve times. The horizontal
// sums of the score tiles use a transpose-and-add tree; the generator
// simulates the tree lane by lane to learn which accumulator ends up in
// which lane, assigns the tile's outputs to accumulators accordingly, and
// checks that every lane of the result is the complete sum of one
// accumulator.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"log"
	"os"
	"strings"
)

// isa describes one instruction set.
type isa struct {
	suffix string // function name suffix: "Z" (AVX-512) or "Y" (AVX2)
	reg    string // vector register prefix
	lanes  int    // float32 lanes per register
	nregs  int    // vector registers
	zero   string // register-zeroing instruction
}

var (
	avx512 = isa{suffix: "Z", reg: "Z", lanes: 16, nregs: 32, zero: "VPXORD"}
	avx2   = isa{suffix: "Y", reg: "Y", lanes: 8, nregs: 16, zero: "VXORPS"}
)

func (a isa) vbytes() int      { return 4 * a.lanes }
func (a isa) r(i int) string   { return fmt.Sprintf("%s%d", a.reg, i) }
func (a isa) masked() bool     { return a.suffix == "Z" }
func (a isa) tailShift() int   { return map[int]int{16: 4, 8: 3}[a.lanes] }
func (a isa) fullMask() string { return "$0xFFFF" }

type emitter struct{ b bytes.Buffer }

func (e *emitter) p(format string, args ...any) { fmt.Fprintf(&e.b, format+"\n", args...) }

// ins writes one instruction with its operands in Go assembler order.
func (e *emitter) ins(op string, args ...string) {
	if len(args) == 0 {
		e.p("\t%s", op)
		return
	}
	e.p("\t%s\t%s", op, strings.Join(args, ", "))
}

func (e *emitter) label(l string) { e.p("\n%s:", l) }

// ---- the transpose-and-add tree ----

// lane is the content of one lane during the reduction: a partial sum of
// accumulator acc over n of its original lanes.
type lane struct{ acc, n int }

// level is one step of the tree: registers i and i+m/2 are combined by
// two shuffles (immediates lo, hi) and an add.
type level struct {
	op     string
	lo, hi int
}

var (
	zLevels = []level{{"VSHUFF64X2", 0x44, 0xEE}, {"VSHUFF32X4", 0x88, 0xDD}, {"VSHUFPS", 0x44, 0xEE}, {"VSHUFPS", 0x88, 0xDD}}
	yLevels = []level{{"VPERM2F128", 0x20, 0x31}, {"VSHUFPS", 0x44, 0xEE}, {"VSHUFPS", 0x88, 0xDD}}
)

// shuffle returns the lanes of "op $imm, src2, src1, dst" (Intel:
// op dst, src1, src2, imm) for registers of len(src1) lanes.
func shuffle(op string, imm int, src1, src2 []lane) []lane {
	n := len(src1)
	out := make([]lane, n)
	switch op {
	case "VSHUFF64X2", "VSHUFF32X4": // 4 chunks of 128 bits: 2 from src1, 2 from src2
		for c := range 4 {
			sel := imm >> (2 * c) & 3
			src := src1
			if c >= 2 {
				src = src2
			}
			copy(out[4*c:4*c+4], src[4*sel:4*sel+4])
		}
	case "VPERM2F128": // 2 halves, each any half of src1 or src2
		for h := range 2 {
			sel := imm >> (4 * h) & 3
			src := src1
			if sel >= 2 {
				src = src2
			}
			copy(out[4*h:4*h+4], src[4*(sel&1):4*(sel&1)+4])
		}
	case "VSHUFPS": // per 128-bit chunk: 2 lanes of src1, 2 of src2
		for c := 0; c < n; c += 4 {
			for i := range 4 {
				sel := imm >> (2 * i) & 3
				src := src1
				if i >= 2 {
					src = src2
				}
				out[c+i] = src[c+sel]
			}
		}
	default:
		log.Fatalf("shuffle: unknown op %s", op)
	}
	return out
}

// reduce emits the tree that sums each of the len(acc) registers' lanes,
// leaving the result in acc[0], and returns owner: lane i of the result is
// the sum of accumulator register acc[owner[i]]. tmp is a free register.
func reduce(e *emitter, a isa, acc []string, tmp string) []int {
	levels := zLevels
	if a.suffix == "Y" {
		levels = yLevels
	}
	if len(acc) != a.lanes || len(levels) != log2(a.lanes) {
		log.Fatalf("reduce: %d accumulators for %d lanes", len(acc), a.lanes)
	}
	regs := make([][]lane, len(acc))
	for i := range regs {
		regs[i] = make([]lane, a.lanes)
		for l := range regs[i] {
			regs[i][l] = lane{i, 1}
		}
	}
	names := append([]string(nil), acc...)
	for _, lv := range levels {
		m := len(regs) / 2
		for i := range m {
			s1, s2 := regs[i], regs[i+m]
			t := shuffle(lv.op, lv.lo, s1, s2)
			u := shuffle(lv.op, lv.hi, s1, s2)
			sum := make([]lane, a.lanes)
			for l := range sum {
				if t[l].acc != u[l].acc {
					log.Fatalf("reduce: lane %d adds accumulators %d and %d", l, t[l].acc, u[l].acc)
				}
				sum[l] = lane{t[l].acc, t[l].n + u[l].n}
			}
			e.ins(lv.op, fmt.Sprintf("$0x%02X", lv.lo), names[i+m], names[i], tmp)
			e.ins(lv.op, fmt.Sprintf("$0x%02X", lv.hi), names[i+m], names[i], names[i])
			e.ins("VADDPS", tmp, names[i], names[i])
			regs[i] = sum
		}
		regs = regs[:m]
		names = names[:m]
	}
	owner := make([]int, a.lanes)
	seen := map[int]bool{}
	for l, x := range regs[0] {
		if x.n != a.lanes || seen[x.acc] {
			log.Fatalf("reduce: lane %d holds %d lanes of accumulator %d", l, x.n, x.acc)
		}
		seen[x.acc] = true
		owner[l] = x.acc
	}
	return owner
}

func log2(n int) int {
	k := 0
	for ; n > 1; n >>= 1 {
		k++
	}
	return k
}

// ---- addressing of rows through a few base registers ----

// cover returns the smallest set of base rows (including 0) from which
// every row j < n is base + {0, 1, 2, 4, 8}: each row is then addressed
// as (base) or (base)(stride*s) with the stride in an index register.
func cover(n int) []int {
	for size := 1; size <= n; size++ {
		var best []int
		var try func(start int, set []int)
		try = func(start int, set []int) {
			if best != nil {
				return
			}
			if len(set) == size {
				if covers(set, n) {
					best = append([]int(nil), set...)
				}
				return
			}
			for b := start; b < n; b++ {
				try(b+1, append(set, b))
			}
		}
		try(1, []int{0})
		if best != nil {
			return best
		}
	}
	panic("unreachable")
}

func covers(bases []int, n int) bool {
	for j := range n {
		if _, _, ok := rowOf(bases, j); !ok {
			return false
		}
	}
	return true
}

// rowOf finds the base index and scale (0: the base itself) of row j.
func rowOf(bases []int, j int) (bi, scale int, ok bool) {
	for i, b := range bases {
		switch j - b {
		case 0:
			return i, 0, true
		case 1, 2, 4, 8:
			return i, j - b, true
		}
	}
	return 0, 0, false
}

// rowAddr returns the memory operand of row j at byte offset disp.
func rowAddr(bases []int, regs []string, stride string, j, disp int) string {
	bi, s, ok := rowOf(bases, j)
	if !ok {
		log.Fatalf("row %d not covered by %v", j, bases)
	}
	d := ""
	if disp != 0 {
		d = fmt.Sprint(disp)
	}
	if s == 0 {
		return fmt.Sprintf("%s(%s)", d, regs[bi])
	}
	return fmt.Sprintf("%s(%s)(%s*%d)", d, regs[bi], stride, s)
}

// ---- score tiles ----

// genDot writes dot{Z,Y}RxT: see the file comment.
func genDot(e *emitter, a isa, R, T int) {
	name := fmt.Sprintf("dot%s%dx%d", a.suffix, R, T)
	A := R * T
	if A != a.lanes {
		log.Fatalf("%s: %d accumulators for %d lanes", name, A, a.lanes)
	}
	memK := R+T+A > a.nregs // keys as FMA memory operands
	acc := make([]string, A)
	for i := range acc {
		acc[i] = a.r(i)
	}
	qreg := make([]string, R)
	for r := range qreg {
		qreg[r] = a.r(A + r)
	}
	kreg := make([]string, T)
	for t := range kreg {
		kreg[t] = a.r(A + R + t)
	}
	kBases := cover(T)
	kBaseRegs := []string{"R12", "R13", "AX", "R8", "R9"}[:len(kBases)]
	qBases := cover(R)
	qBaseRegs := []string{"R10", "R11"}[:len(qBases)]
	lbl := func(s string) string { return strings.ToLower(name) + s }

	// The reduction tree fixes which accumulator lands in which lane;
	// simulate it first (into a scratch emitter) to assign the outputs.
	var scratch emitter
	owner := reduce(&scratch, a, acc, a.r(A))
	accOf := make([]string, A) // accumulator of output (r, t), index r*T+t
	for l, o := range owner {
		accOf[l] = acc[o]
	}

	e.p("")
	e.p("// func %s(s *float32, lds int, q *float32, ldq int, k *float32, n, dim int)", name)
	e.p("//")
	e.p("// s[r*lds+t] = Σ_{d<%s} q[r*ldq+d]·k[t*dim+d] for r < %d, t < n (n ≥ %d),", map[bool]string{true: "dim", false: "dim&^7"}[a.masked()], R, T)
	e.p("// in tiles of %d query rows × %d keys; a last partial tile is moved back to", R, T)
	e.p("// end at n (recomputing, and storing again, a few scores).")
	e.p("//")
	e.p("// Register plan:")
	e.p("//")
	e.p("//\tBX          key row stride (dim) in bytes; DX: ldq in bytes")
	e.p("//\t%-11s query rows (row r at base + r·DX)", strings.Join(qBaseRegs, ", "))
	e.p("//\t%-11s key rows of the tile, from bases %v (row j at base b + s·BX, s ∈ {0,1,2,4,8})", strings.Join(kBaseRegs, ", "), kBases)
	e.p("//\tSI          t0, the tile's first key; CX: steps left along dim; DI: scratch")
	e.p("//\t%s..%s    accumulators, %d lanes of partial sums each; output (r, t) is", acc[0], acc[A-1], a.lanes)
	e.p("//\t            accumulated in the register whose sum the reduction tree")
	e.p("//\t            leaves in lane r·%d+t: %v", T, ownerNames(accOf))
	if memK {
		e.p("//\t%s..%s    the %d query rows' %d elements at this step; keys are FMA memory operands", qreg[0], qreg[R-1], R, a.lanes)
	} else {
		e.p("//\t%s..%s    query rows' and %s..%s key rows' %d elements at this step", qreg[0], qreg[R-1], kreg[0], kreg[T-1], a.lanes)
	}
	if a.masked() {
		e.p("//\tK1          lanes of the last, partial step (dim mod 16)")
	}
	e.p("//")
	e.p("// Per step: %d FMAs on independent accumulators, %d loads. After the dim", A, map[bool]int{true: R + A, false: R + T}[memK])
	e.p("// loop, %d shuffles and %d adds (the tree) give all %d sums in one register.", 2*(a.lanes-1), a.lanes-1, A)
	e.p("TEXT ·%s(SB), NOSPLIT, $0-56", name)
	e.ins("MOVQ", "dim+48(FP)", "BX")
	e.ins("SHLQ", "$2", "BX")
	e.ins("MOVQ", "ldq+24(FP)", "DX")
	e.ins("SHLQ", "$2", "DX")
	if a.masked() {
		e.ins("MOVQ", "dim+48(FP)", "CX")
		e.ins("ANDQ", "$15", "CX")
		e.ins("MOVL", "$1", "AX")
		e.ins("SHLL", "CX", "AX")
		e.ins("DECL", "AX")
		e.ins("KMOVW", "AX", "K1")
	}
	e.ins("XORQ", "SI", "SI")

	e.label(lbl("tile"))
	e.ins("MOVQ", "n+40(FP)", "DI")
	e.ins("SUBQ", fmt.Sprintf("$%d", T), "DI")
	e.ins("CMPQ", "SI", "DI")
	e.ins("JLE", lbl("at"))
	e.ins("MOVQ", "DI", "SI")
	e.label(lbl("at"))
	e.ins("MOVQ", "SI", kBaseRegs[0])
	e.ins("IMULQ", "BX", kBaseRegs[0])
	e.ins("ADDQ", "k+32(FP)", kBaseRegs[0])
	for i := 1; i < len(kBases); i++ {
		e.ins("IMUL3Q", fmt.Sprintf("$%d", kBases[i]), "BX", kBaseRegs[i])
		e.ins("ADDQ", kBaseRegs[0], kBaseRegs[i])
	}
	e.ins("MOVQ", "q+16(FP)", qBaseRegs[0])
	for i := 1; i < len(qBases); i++ {
		e.ins("IMUL3Q", fmt.Sprintf("$%d", qBases[i]), "DX", qBaseRegs[i])
		e.ins("ADDQ", qBaseRegs[0], qBaseRegs[i])
	}
	for _, r := range acc {
		e.ins(a.zero, r, r, r)
	}
	e.ins("MOVQ", "dim+48(FP)", "CX")
	e.ins("SHRQ", fmt.Sprintf("$%d", a.tailShift()), "CX")
	e.ins("JZ", lbl("tail"))

	step := func(masked bool) {
		ld := func(addr, reg string) {
			if masked {
				e.ins("VMOVUPS.Z", addr, "K1", reg)
			} else {
				e.ins("VMOVUPS", addr, reg)
			}
		}
		for r := range R {
			ld(rowAddr(qBases, qBaseRegs, "DX", r, 0), qreg[r])
		}
		if memK {
			for t := range T {
				addr := rowAddr(kBases, kBaseRegs, "BX", t, 0)
				for r := range R {
					if masked {
						e.ins("VFMADD231PS", addr, qreg[r], "K1", accOf[r*T+t])
					} else {
						e.ins("VFMADD231PS", addr, qreg[r], accOf[r*T+t])
					}
				}
			}
			return
		}
		for t := range T {
			ld(rowAddr(kBases, kBaseRegs, "BX", t, 0), kreg[t])
		}
		for r := range R {
			for t := range T {
				e.ins("VFMADD231PS", kreg[t], qreg[r], accOf[r*T+t])
			}
		}
	}
	e.label(lbl("step"))
	step(false)
	for _, r := range append(append([]string(nil), qBaseRegs...), kBaseRegs...) {
		e.ins("ADDQ", fmt.Sprintf("$%d", a.vbytes()), r)
	}
	e.ins("DECQ", "CX")
	e.ins("JNZ", lbl("step"))

	e.label(lbl("tail"))
	if a.masked() {
		e.ins("MOVQ", "dim+48(FP)", "CX")
		e.ins("ANDQ", "$15", "CX")
		e.ins("JZ", lbl("reduce"))
		step(true)
		e.label(lbl("reduce"))
	}
	reduce(e, a, acc, a.r(A))

	// store the R rows of T sums from acc[0]
	e.ins("MOVQ", "s+0(FP)", "DI")
	e.ins("LEAQ", "(DI)(SI*4)", "DI")
	e.ins("MOVQ", "lds+8(FP)", "CX")
	e.ins("SHLQ", "$2", "CX")
	res := acc[0]
	x := func(r string) string { return "X" + r[1:] }
	y := func(r string) string { return "Y" + r[1:] }
	tmp := a.r(1)
	for r := range R {
		switch {
		case T == a.lanes:
			e.ins("VMOVUPS", res, "(DI)")
		case a.suffix == "Z" && T == 8:
			if r == 0 {
				e.ins("VMOVUPS", y(res), "(DI)")
			} else {
				e.ins("VEXTRACTF32X8", "$1", res, y(tmp))
				e.ins("VMOVUPS", y(tmp), "(DI)")
			}
		case a.suffix == "Z" && T == 4:
			if r == 0 {
				e.ins("VMOVUPS", x(res), "(DI)")
			} else {
				e.ins("VEXTRACTF32X4", fmt.Sprintf("$%d", r), res, x(tmp))
				e.ins("VMOVUPS", x(tmp), "(DI)")
			}
		case a.suffix == "Y" && T == 4:
			if r == 0 {
				e.ins("VMOVUPS", x(res), "(DI)")
			} else {
				e.ins("VEXTRACTF128", "$1", res, x(tmp))
				e.ins("VMOVUPS", x(tmp), "(DI)")
			}
		case a.suffix == "Y" && T == 2:
			src := x(res)
			if r >= 2 {
				src = x(tmp)
				if r == 2 {
					e.ins("VEXTRACTF128", "$1", res, x(tmp))
				}
			}
			if r%2 == 0 {
				e.ins("VMOVLPS", src, "(DI)")
			} else {
				e.ins("VMOVHPS", src, "(DI)")
			}
		default:
			log.Fatalf("%s: no store for T=%d", name, T)
		}
		if r < R-1 {
			e.ins("ADDQ", "CX", "DI")
		}
	}
	e.ins("ADDQ", fmt.Sprintf("$%d", T), "SI")
	e.ins("CMPQ", "SI", "n+40(FP)")
	e.ins("JLT", lbl("tile"))
	e.ins("VZEROUPPER")
	e.ins("RET")
}

func ownerNames(accOf []string) string { return strings.Join(accOf, " ") }

// ---- axpy kernels ----

// chunk is one column-chunk loop of an axpy kernel: C registers of columns
// per row, S accumulator sets (the t loop unrolled S times, set s taking
// the positions t ≡ s mod S), masked: an AVX-512 loop over ≤ 16 columns
// under K1.
type chunk struct {
	C, S   int
	masked bool
}

func axpyChunks(a isa, R int) []chunk {
	var cs []int
	switch {
	case a.suffix == "Z":
		cs = []int{4, 2, 1}
	case R <= 2:
		cs = []int{4, 2, 1}
	default:
		cs = []int{2, 1}
	}
	var out []chunk
	for i, c := range cs {
		s := 1
		for R*c*s < 8 {
			s *= 2
		}
		if R*c*s+c+1 > a.nregs {
			log.Fatalf("axpy%s%d: chunk C=%d S=%d needs too many registers", a.suffix, R, c, s)
		}
		out = append(out, chunk{C: c, S: s, masked: a.masked() && i == len(cs)-1})
	}
	return out
}

func genAxpy(e *emitter, a isa, R int) {
	name := fmt.Sprintf("axpy%s%d", a.suffix, R)
	chunks := axpyChunks(a, R)
	lbl := func(s string) string { return strings.ToLower(name) + s }
	outAddr := func(r, disp int) string {
		d := ""
		if disp != 0 {
			d = fmt.Sprint(disp)
		}
		switch r {
		case 0:
			return d + "(DI)"
		case 1:
			return d + "(DI)(R8*1)"
		case 2:
			return d + "(DI)(R8*2)"
		}
		return d + "(R9)"
	}
	pAddr := func(r, disp int) string {
		d := ""
		if disp != 0 {
			d = fmt.Sprint(disp)
		}
		switch r {
		case 0:
			return d + "(R10)"
		case 1:
			return d + "(R10)(DX*1)"
		case 2:
			return d + "(R10)(DX*2)"
		}
		return d + "(R11)"
	}

	e.p("")
	e.p("// func %s(out *float32, ldo int, p *float32, ldp int, v *float32, ldv, n, width int)", name)
	e.p("//")
	e.p("// out[r*ldo+c] += Σ_{t<n} p[r*ldp+t]·v[t*ldv+c] for r < %d, c < width%s.", R, map[bool]string{true: "", false: " (a multiple of 8)"}[a.masked()])
	e.p("// Columns go in chunks of C registers; for each chunk the %d·C outputs", R)
	e.p("// are held in registers over the whole t loop (loaded from out before,")
	e.p("// stored after), each v row chunk is loaded once and multiplied by the")
	e.p("// broadcast p[r][t] of every row. Chunks (C registers, S accumulator")
	e.p("// sets, the t loop unrolled S times so that at least 8 FMA chains are")
	e.p("// in flight):")
	e.p("//")
	for _, c := range chunks {
		m := ""
		if c.masked {
			m = ", under the opmask K1 (the last 1..16 columns)"
		}
		e.p("//\tC=%d S=%d: %d columns per chunk, %d accumulators%s", c.C, c.S, c.C*a.lanes, R*c.C*c.S, m)
	}
	e.p("//")
	e.p("// Register plan: DI = out at the chunk's column, R8 = ldo in bytes, R9 =")
	e.p("// out row 3; SI = v at the chunk's column, BX = ldv in bytes, R12 = v row")
	e.p("// t; R10 = p at t (row r at R10 + r·DX, DX = ldp in bytes), R11 = p row 3")
	e.p("// at t; CX = positions left; R13 = columns left; AX scratch. Vector")
	e.p("// registers: accumulator (s, r, c) is number s·%d·C + r·C + c, then the C", R)
	e.p("// v registers, then the broadcast p.")
	e.p("TEXT ·%s(SB), NOSPLIT, $0-64", name)
	e.ins("MOVQ", "out+0(FP)", "DI")
	e.ins("MOVQ", "ldo+8(FP)", "R8")
	e.ins("SHLQ", "$2", "R8")
	e.ins("MOVQ", "ldp+24(FP)", "DX")
	e.ins("SHLQ", "$2", "DX")
	e.ins("MOVQ", "v+32(FP)", "SI")
	e.ins("MOVQ", "ldv+40(FP)", "BX")
	e.ins("SHLQ", "$2", "BX")
	e.ins("MOVQ", "width+56(FP)", "R13")
	e.ins("CMPQ", "n+48(FP)", "$0")
	e.ins("JLE", lbl("done"))

	for ci, ch := range chunks {
		C, S := ch.C, ch.S
		accR := func(s, r, c int) string { return a.r(s*R*C + r*C + c) }
		vreg := func(c int) string { return a.r(S*R*C + c) }
		breg := a.r(S*R*C + C)
		pre := lbl(fmt.Sprintf("c%d", ci))
		e.label(pre)
		if ch.masked {
			e.ins("TESTQ", "R13", "R13")
			e.ins("JLE", lbl("done"))
			e.ins("MOVL", a.fullMask(), "AX")
			e.ins("CMPQ", "R13", "$16")
			e.ins("JGE", pre+"mask")
			e.ins("MOVQ", "R13", "CX")
			e.ins("MOVL", "$1", "AX")
			e.ins("SHLL", "CX", "AX")
			e.ins("DECL", "AX")
			e.label(pre + "mask")
			e.ins("KMOVW", "AX", "K1")
		} else {
			next := lbl("done")
			if ci+1 < len(chunks) {
				next = lbl(fmt.Sprintf("c%d", ci+1))
			}
			e.ins("CMPQ", "R13", fmt.Sprintf("$%d", C*a.lanes))
			e.ins("JLT", next)
		}
		if R == 4 {
			e.ins("LEAQ", "(DI)(R8*2)", "R9")
			e.ins("ADDQ", "R8", "R9")
		}
		for r := range R {
			for c := range C {
				if ch.masked {
					e.ins("VMOVUPS.Z", outAddr(r, c*a.vbytes()), "K1", accR(0, r, c))
				} else {
					e.ins("VMOVUPS", outAddr(r, c*a.vbytes()), accR(0, r, c))
				}
			}
		}
		for s := 1; s < S; s++ {
			for r := range R {
				for c := range C {
					x := accR(s, r, c)
					e.ins(a.zero, x, x, x)
				}
			}
		}
		e.ins("MOVQ", "p+16(FP)", "R10")
		if R == 4 {
			e.ins("LEAQ", "(R10)(DX*2)", "R11")
			e.ins("ADDQ", "DX", "R11")
		}
		e.ins("MOVQ", "SI", "R12")
		e.ins("MOVQ", "n+48(FP)", "CX")
		body := func(s, set int) {
			for c := range C {
				if ch.masked {
					e.ins("VMOVUPS.Z", fmt.Sprintf("%d(R12)", c*a.vbytes()), "K1", vreg(c))
				} else {
					e.ins("VMOVUPS", fmt.Sprintf("%d(R12)", c*a.vbytes()), vreg(c))
				}
			}
			for r := range R {
				e.ins("VBROADCASTSS", pAddr(r, 4*s), breg)
				for c := range C {
					e.ins("VFMADD231PS", vreg(c), breg, accR(set, r, c))
				}
			}
			e.ins("ADDQ", "BX", "R12")
		}
		if S == 1 {
			e.label(pre + "t")
			body(0, 0)
			e.ins("ADDQ", "$4", "R10")
			if R == 4 {
				e.ins("ADDQ", "$4", "R11")
			}
			e.ins("DECQ", "CX")
			e.ins("JNZ", pre+"t")
		} else {
			e.ins("CMPQ", "CX", fmt.Sprintf("$%d", S))
			e.ins("JLT", pre+"rest")
			e.label(pre + "t")
			for s := range S {
				body(s, s)
			}
			e.ins("ADDQ", fmt.Sprintf("$%d", 4*S), "R10")
			if R == 4 {
				e.ins("ADDQ", fmt.Sprintf("$%d", 4*S), "R11")
			}
			e.ins("SUBQ", fmt.Sprintf("$%d", S), "CX")
			e.ins("CMPQ", "CX", fmt.Sprintf("$%d", S))
			e.ins("JGE", pre+"t")
			e.label(pre + "rest")
			e.ins("TESTQ", "CX", "CX")
			e.ins("JLE", pre+"fold")
			e.label(pre + "t1")
			body(0, 0)
			e.ins("ADDQ", "$4", "R10")
			if R == 4 {
				e.ins("ADDQ", "$4", "R11")
			}
			e.ins("DECQ", "CX")
			e.ins("JNZ", pre+"t1")
			e.label(pre + "fold")
			// pairwise: set s += set s+h, for h = S/2, S/4, ..., 1
			for h := S / 2; h >= 1; h /= 2 {
				for s := range h {
					for r := range R {
						for c := range C {
							e.ins("VADDPS", accR(s+h, r, c), accR(s, r, c), accR(s, r, c))
						}
					}
				}
			}
		}
		for r := range R {
			for c := range C {
				if ch.masked {
					e.ins("VMOVUPS", accR(0, r, c), "K1", outAddr(r, c*a.vbytes()))
				} else {
					e.ins("VMOVUPS", accR(0, r, c), outAddr(r, c*a.vbytes()))
				}
			}
		}
		e.ins("ADDQ", fmt.Sprintf("$%d", C*a.vbytes()), "DI")
		e.ins("ADDQ", fmt.Sprintf("$%d", C*a.vbytes()), "SI")
		e.ins("SUBQ", fmt.Sprintf("$%d", C*a.lanes), "R13")
		e.ins("JMP", pre)
	}
	e.label(lbl("done"))
	e.ins("VZEROUPPER")
	e.ins("RET")
}

const header = `// Code generated by go run ./gen; DO NOT EDIT.

//go:build amd64 && !purego

// Attention kernels over one block of the KV cache, for AVX-512 (suffix
// Z: EVEX-encoded, Z0-Z31, opmask K1 for partial vectors) and AVX2+FMA
// (suffix Y: VEX-encoded only, Y0-Y15). See gen/main.go for how they are
// built and attn.go for the exported functions that call them.
//
// Conventions: ABI0, NOSPLIT, no local frame; registers AX BX CX DX SI DI
// R8-R13 and the vector registers (BP, R14 and R15 untouched); VZEROUPPER
// before RET.
//
// dot* (scores, keys stored [slot][dim]): register tiles of R query rows ×
// T keys, R·T = the lane count, so a tile's R·T accumulators reduce to one
// register of R·T sums with log2(lanes) levels of shuffle-shuffle-add
// (pairing register i with i+m/2 at 256-, 128-, 64- then 32-bit
// granularity), the sums landing in a fixed lane order that the generator
// accounts for when it assigns outputs to accumulators.
//
// axpy* (values stored [slot][dim], and scores from keys stored [dim][slot]):
// out rows += p row · v; each SIMD lane accumulates one output column, so
// there are no horizontal sums at all.

#include "textflag.h"
`

func main() {
	out := flag.String("o", "attn_amd64.s", "output file")
	flag.Parse()
	var e emitter
	e.b.WriteString(header)
	for _, a := range []isa{avx512, avx2} {
		for _, rt := range [][2]int{{4, a.lanes / 4}, {2, a.lanes / 2}, {1, a.lanes}} {
			genDot(&e, a, rt[0], rt[1])
		}
		for R := 1; R <= 4; R++ {
			genAxpy(&e, a, R)
		}
	}
	if err := os.WriteFile(*out, e.b.Bytes(), 0o644); err != nil {
		log.Fatal(err)
	}
}
