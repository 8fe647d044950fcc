package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"strconv"

	"github.com/marlin-llm/marlin/backend"
)

func init() {
	register(command{name: "logits", usage: "MODEL --ids 1,2,3 [--decode N] [--last K] [--json]",
		summary: "print the raw logits of every position (verification)", run: logitsCmd})
}

func logitsCmd(args []string) error {
	f := newFlags("logits", "MODEL --ids 1,2,3 [--decode N] [--last K] [--json]")
	mo := addModelFlags(f)
	idsFlag := f.String("ids", "", "token ids, comma-separated")
	decode := f.Int("decode", 0, "feed the last N ids one at a time (decode steps: one row a pass) after the others in one pass")
	last := f.Int("last", 0, "print only the last K positions' logits (0: all)")
	asJSON := f.Bool("json", false, `print {"ids":[...],"from":P,"logits":[[...], ...]} (logits of positions P, P+1, …; null for NaN or ±Inf)`)
	pos, err := f.parse(args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("want exactly one MODEL folder")
	}
	if *idsFlag == "" {
		return usagef("--ids is required")
	}
	ids, err := parseIDs(*idsFlag)
	if err != nil {
		return err
	}
	if *decode < 0 || *decode > len(ids) || *last < 0 || *last > len(ids) {
		return usagef("--decode %d and --last %d: want 0 … %d (the number of ids)", *decode, *last, len(ids))
	}
	s, err := mo.open(pos[0], false)
	if err != nil {
		return err
	}
	defer s.Close()
	logits, err := allLogits(s, ids, *decode)
	if err != nil {
		return err
	}
	from := 0
	if *last > 0 {
		from = len(ids) - *last
	}
	w := bufio.NewWriter(os.Stdout)
	defer w.Flush()
	if *asJSON {
		return writeLogitsJSON(w, ids, from, logits[from:])
	}
	for i := from; i < len(ids); i++ {
		row := logits[i]
		fmt.Fprintf(w, "position %d (token %d):", i, ids[i])
		for _, v := range row {
			w.WriteByte(' ')
			w.WriteString(strconv.FormatFloat(float64(v), 'g', -1, 32))
		}
		w.WriteByte('\n')
	}
	return nil
}

// allLogits runs ids through the model as one sequence and returns the
// logits at every position: the last decode ids one at a time (each pass a
// batch of one row, as generation's decode steps, its logits read before
// the next), after the others in one pass.
func allLogits(s *session, ids []int32, decode int) ([][]float32, error) {
	info := s.m.Info()
	vocab := info.Vocab
	for _, t := range ids {
		if int(t) >= vocab {
			return nil, fmt.Errorf("token id %d outside the vocabulary of %d", t, vocab)
		}
	}
	if info.ContextLength > 0 && len(ids) > info.ContextLength {
		return nil, fmt.Errorf("%d ids exceed the context length %d", len(ids), info.ContextLength)
	}
	spec := info.KV
	spec.BlockSize = 16
	spec.Blocks = (len(ids) + 15) / 16
	cache, err := s.be.NewKVCache(spec)
	if err != nil {
		return nil, err
	}
	blocks := make([]int32, spec.Blocks)
	for i := range blocks {
		blocks[i] = int32(i)
	}
	// pass runs ids[from:to] at their positions and reads their logits
	pass := func(from, to int) ([][]float32, error) {
		b := &backend.Batch{Tokens: ids[from:to], Seqs: []backend.Seq{{Start: 0, Len: to - from, Blocks: blocks}}}
		rows := make([]int32, to-from)
		for i := range rows {
			b.Pos = append(b.Pos, int32(from+i))
			rows[i] = int32(i)
		}
		t := s.m.Forward(b, cache, rows)
		buf := make([]float32, len(rows)*vocab)
		if err := s.be.Read(buf, t); err != nil {
			return nil, err
		}
		out := make([][]float32, len(rows))
		for i := range out {
			out[i] = buf[i*vocab : (i+1)*vocab]
		}
		return out, nil
	}
	var out [][]float32
	if n := len(ids) - decode; n > 0 {
		rows, err := pass(0, n)
		if err != nil {
			return nil, err
		}
		out = rows
	}
	for i := len(ids) - decode; i < len(ids); i++ {
		row, err := pass(i, i+1)
		if err != nil {
			return nil, err
		}
		out = append(out, row...)
	}
	return out, nil
}

// writeLogitsJSON prints {"ids":[...],"from":P,"logits":[[...], ...]} and
// a newline, each logit as the shortest decimal that reads back as the
// same float32, and null where it is NaN or ±Inf (which JSON cannot hold:
// a broken kernel's logits still print, and say where they broke).
func writeLogitsJSON(w *bufio.Writer, ids []int32, from int, logits [][]float32) error {
	idsJSON, err := json.Marshal(ids)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, `{"ids":%s,"from":%d,"logits":[`, idsJSON, from)
	var buf []byte
	for i, row := range logits {
		if i > 0 {
			w.WriteByte(',')
		}
		buf = append(buf[:0], '[')
		for j, v := range row {
			if j > 0 {
				buf = append(buf, ',')
			}
			if f := float64(v); math.IsNaN(f) || math.IsInf(f, 0) {
				buf = append(buf, "null"...)
			} else {
				buf = strconv.AppendFloat(buf, f, 'g', -1, 32)
			}
		}
		buf = append(buf, ']')
		w.Write(buf)
	}
	_, err = w.WriteString("]}\n")
	return err
}
