package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"strconv"

	"github.com/marlin-llm/marlin/backend"
)

func init() {
	register(command{name: "logits", usage: "MODEL --ids 1,2,3 [--json]",
		summary: "print the raw logits of every position (verification)", run: logitsCmd})
}

func logitsCmd(args []string) error {
	f := newFlags("logits", "MODEL --ids 1,2,3 [--json]")
	mo := addModelFlags(f)
	idsFlag := f.String("ids", "", "token ids, comma-separated")
	asJSON := f.Bool("json", false, `print {"ids":[...],"logits":[[...], ...]}`)
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
	s, err := mo.open(pos[0], false)
	if err != nil {
		return err
	}
	defer s.Close()
	logits, err := allLogits(s, ids)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(os.Stdout)
	defer w.Flush()
	if *asJSON {
		return json.NewEncoder(w).Encode(map[string]any{"ids": ids, "logits": logits})
	}
	for i, row := range logits {
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
// logits at every position.
func allLogits(s *session, ids []int32) ([][]float32, error) {
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
	b := &backend.Batch{Tokens: ids}
	blocks := make([]int32, spec.Blocks)
	rows := make([]int32, len(ids))
	for i := range ids {
		b.Pos = append(b.Pos, int32(i))
		rows[i] = int32(i)
	}
	for i := range blocks {
		blocks[i] = int32(i)
	}
	b.Seqs = []backend.Seq{{Start: 0, Len: len(ids), Blocks: blocks}}
	t := s.m.Forward(b, cache, rows)
	buf := make([]float32, len(ids)*vocab)
	if err := s.be.Read(buf, t); err != nil {
		return nil, err
	}
	out := make([][]float32, len(ids))
	for i := range out {
		out[i] = buf[i*vocab : (i+1)*vocab]
	}
	return out, nil
}
