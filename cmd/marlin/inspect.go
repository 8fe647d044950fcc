package main

import (
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/marlin-llm/marlin/backend/cpu"
	"github.com/marlin-llm/marlin/format/hf"
	"github.com/marlin-llm/marlin/model"
)

func init() {
	register(command{name: "inspect", usage: "MODEL [--json] [--tensors]",
		summary: "architecture, tensors, formats and sizes of a model", run: inspectCmd})
}

type inspectTensor struct {
	Name  string `json:"name"`
	DType string `json:"dtype"`
	Shape []int  `json:"shape"`
	Bytes int64  `json:"bytes"`
}

func inspectCmd(args []string) error {
	f := newFlags("inspect", "MODEL [--json] [--tensors]")
	asJSON := f.Bool("json", false, "print JSON")
	tensors := f.Bool("tensors", false, "list every tensor")
	pos, err := f.parse(args)
	if err != nil {
		return err
	}
	if len(pos) > 1 {
		return usagef("want one MODEL folder")
	}
	dir := ""
	if len(pos) == 1 {
		dir = pos[0]
	}
	if dir, err = resolveModel(dir); err != nil {
		return err
	}
	ck, err := hf.Open(dir)
	if err != nil {
		return err
	}
	var list []inspectTensor
	var total int64
	byType := map[string]int64{}
	for _, n := range ck.Names() {
		ti, _ := ck.Info(n)
		b := ti.End - ti.Begin
		total += b
		byType[ti.DType.String()] += b
		list = append(list, inspectTensor{n, ti.DType.String(), ti.Shape, b})
	}
	c := ck.Config
	rep := map[string]any{
		"dir": dir, "architecture": c.Architecture(), "model_type": c.ModelType,
		"vocab_size": c.VocabSize, "hidden_size": c.HiddenSize, "layers": c.NumHiddenLayers,
		"heads": c.NumAttentionHeads, "kv_heads": c.KVHeads(), "head_dim": c.HeadDimension(),
		"intermediate_size": c.IntermediateSize, "context_length": c.MaxPositionEmbeddings,
		"tied_embeddings": c.TiedEmbeddings(), "experts": c.Experts(),
		"tensors": len(list), "bytes": total, "bytes_by_dtype": byType, "files": ck.Files(),
	}
	if len(c.QuantizationConfig) > 0 {
		rep["quantization_config"] = json.RawMessage(c.QuantizationConfig)
	}
	if r, err := c.Rope(); err == nil {
		rep["rope"] = r
	}
	// Loading the model (weights mapped, not copied) checks that it is
	// complete and reports its formats.
	m, lerr := model.FromCheckpoint(ck, cpu.New(1))
	if lerr == nil {
		info := m.Info()
		rep["params"] = info.Params
		rep["formats"] = info.Formats
		rep["eos"] = info.EOS
		rep["bos"] = info.BOS
		rep["kv_bytes_per_token"] = info.KV.TokenBytes()
		defer m.Close()
	} else {
		rep["load_error"] = lerr.Error()
		defer ck.Close()
	}
	if *tensors {
		rep["tensor_list"] = list
	}
	if *asJSON {
		e := json.NewEncoder(os.Stdout)
		e.SetIndent("", "  ")
		return e.Encode(rep)
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	keys := make([]string, 0, len(rep))
	for k := range rep {
		if k != "tensor_list" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := rep[k]
		if raw, ok := v.(json.RawMessage); ok {
			v = string(raw)
		}
		fmt.Fprintf(w, "%s\t%v\n", k, v)
	}
	if *tensors {
		fmt.Fprintln(w)
		for _, t := range list {
			fmt.Fprintf(w, "%s\t%s\t%v\t%d\n", t.Name, t.DType, strings.Trim(fmt.Sprint(t.Shape), "[]"), t.Bytes)
		}
	}
	return w.Flush()
}
