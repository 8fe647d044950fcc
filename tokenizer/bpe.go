package tokenizer

import (
	"strings"
	"sync"
	"unicode/utf8"
)

// model turns one pre-tokenized piece into ids.
type model interface {
	// encode appends the ids of piece to dst. raw reports that piece holds
	// raw bytes still to be mapped to byte-level characters.
	encode(ws *workspace, piece string, raw bool, dst []int32) []int32
}

// mergeVal is the rank of a merge and the id of the token it makes.
type mergeVal struct{ rank, id int32 }

func pairKey(a, b int32) uint64 { return uint64(uint32(a))<<32 | uint64(uint32(b)) }

// bpeModel is Hugging Face's BPE model: merges applied by rank.
type bpeModel struct {
	vocab        map[string]int32
	merges       map[uint64]mergeVal
	unk          int32 // -1 when there is no unknown token
	fuseUnk      bool
	byteFallback bool
	ignoreMerges bool
	prefix       string // continuing_subword_prefix
	suffix       string // end_of_word_suffix
	fallbackIDs  [256]int32

	// chunks, when set, cuts whole texts (no pre-tokenizer) into pieces
	// that can be merged separately and cached.
	chunks *chunker

	// Byte-level fast path: ids of the 256 byte characters and the vocab
	// keyed by raw bytes. fast is false when it cannot be used.
	fast     bool
	byteIDs  [256]int32
	rawVocab map[string]int32
}

// initFast prepares the byte-level fast path and the byte-fallback ids.
func (m *bpeModel) initFast() {
	for b := 0; b < 256; b++ {
		m.fallbackIDs[b] = -1
		if id, ok := m.vocab[byteFallbackName(byte(b))]; ok {
			m.fallbackIDs[b] = id
		}
	}
	m.fast = m.prefix == "" && m.suffix == ""
	for b := 0; b < 256; b++ {
		id, ok := m.vocab[byteToStr[b]]
		if !ok {
			m.fast = false
			break
		}
		m.byteIDs[b] = id
	}
	if m.fast && m.ignoreMerges {
		m.rawVocab = make(map[string]int32, len(m.vocab))
		var buf []byte
		for tok, id := range m.vocab {
			var ok bool
			buf, ok = byteLevelDecode(buf[:0], tok)
			if ok {
				m.rawVocab[string(buf)] = id
			}
		}
	}
}

const hexDigits = "0123456789ABCDEF"

// byteFallbackName is the name of a byte-fallback token, like "<0x0A>".
func byteFallbackName(b byte) string {
	return string([]byte{'<', '0', 'x', hexDigits[b>>4], hexDigits[b&15], '>'})
}

// parseByteFallback recognises "<0xNN>" tokens.
func parseByteFallback(tok string) (byte, bool) {
	if len(tok) != 6 || tok[0] != '<' || tok[1] != '0' || tok[2] != 'x' || tok[5] != '>' {
		return 0, false
	}
	hi, ok1 := hexVal(tok[3])
	lo, ok2 := hexVal(tok[4])
	return hi<<4 | lo, ok1 && ok2
}

func hexVal(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}

func (m *bpeModel) encode(ws *workspace, piece string, raw bool, dst []int32) []int32 {
	if piece == "" {
		return dst
	}
	if raw {
		if m.fast {
			return m.encodeRaw(ws, piece, dst)
		}
		ws.buf = byteLevelEncode(ws.buf[:0], piece)
		piece = string(ws.buf)
	}
	if m.chunks != nil {
		return m.chunks.encode(piece, dst, func(chunk string, dst []int32) []int32 {
			return m.encodeWord(ws, chunk, dst)
		})
	}
	return m.encodeWord(ws, piece, dst)
}

// encodeRaw encodes raw bytes with byte-level BPE.
func (m *bpeModel) encodeRaw(ws *workspace, raw string, dst []int32) []int32 {
	if m.ignoreMerges {
		if id, ok := m.rawVocab[raw]; ok {
			return append(dst, id)
		}
	}
	syms := ws.syms[:0]
	for i := 0; i < len(raw); i++ {
		syms = append(syms, bpeSym{id: m.byteIDs[raw[i]], prev: int32(i - 1), next: int32(i + 1)})
	}
	syms[len(syms)-1].next = -1
	ws.syms = syms
	return m.mergeAll(ws, dst)
}

// encodeWord encodes a piece made of the model's own characters.
func (m *bpeModel) encodeWord(ws *workspace, w string, dst []int32) []int32 {
	if m.ignoreMerges {
		if id, ok := m.vocab[w]; ok {
			return append(dst, id)
		}
	}
	syms := ws.syms[:0]
	add := func(id int32) {
		n := int32(len(syms))
		syms = append(syms, bpeSym{id: id, prev: n - 1, next: n + 1})
	}
	pendingUnk := false
	for i := 0; i < len(w); {
		_, n := utf8.DecodeRuneInString(w[i:])
		key := w[i : i+n]
		if i > 0 && m.prefix != "" {
			key = m.prefix + key
		}
		if i+n == len(w) && m.suffix != "" {
			key += m.suffix
		}
		i += n
		if id, ok := m.vocab[key]; ok {
			if pendingUnk {
				add(m.unk)
				pendingUnk = false
			}
			add(id)
			continue
		}
		if m.byteFallback {
			all := true
			for j := 0; j < len(key); j++ {
				if m.fallbackIDs[key[j]] < 0 {
					all = false
					break
				}
			}
			if all {
				// Like Hugging Face, a pending unknown token is not flushed
				// before the fallback bytes.
				for j := 0; j < len(key); j++ {
					add(m.fallbackIDs[key[j]])
				}
				continue
			}
		}
		if m.unk >= 0 {
			if pendingUnk && !m.fuseUnk {
				add(m.unk)
			}
			pendingUnk = true
		}
	}
	if pendingUnk {
		add(m.unk)
	}
	if len(syms) == 0 {
		ws.syms = syms
		return dst
	}
	syms[len(syms)-1].next = -1
	ws.syms = syms
	return m.mergeAll(ws, dst)
}

// bpeSym is one symbol of a word being merged; id < 0 marks a symbol that
// was merged into its left neighbour.
type bpeSym struct{ id, prev, next int32 }

// mergeItem is a candidate merge in the priority queue.
type mergeItem struct{ rank, pos, id int32 }

// before orders by lower rank, then leftmost.
func (a mergeItem) before(b mergeItem) bool {
	return a.rank < b.rank || (a.rank == b.rank && a.pos < b.pos)
}

// queue is a binary min-heap of the items a merge loop picks from, first
// the one that comes before all others (the BPE and SentencePiece
// encoders' merge queues).
type queue[T interface{ before(T) bool }] []T

func (h *queue[T]) push(it T) {
	q := append(*h, it)
	i := len(q) - 1
	for i > 0 {
		p := (i - 1) / 2
		if !q[i].before(q[p]) {
			break
		}
		q[i], q[p] = q[p], q[i]
		i = p
	}
	*h = q
}

func (h *queue[T]) pop() T {
	q := *h
	top := q[0]
	n := len(q) - 1
	q[0] = q[n]
	q = q[:n]
	i := 0
	for {
		l := 2*i + 1
		if l >= n {
			break
		}
		c := l
		if r := l + 1; r < n && q[r].before(q[l]) {
			c = r
		}
		if !q[c].before(q[i]) {
			break
		}
		q[i], q[c] = q[c], q[i]
		i = c
	}
	*h = q
	return top
}

// mergeAll applies the merges to ws.syms, lowest rank first and leftmost
// first among equal ranks, and appends the resulting ids to dst.
func (m *bpeModel) mergeAll(ws *workspace, dst []int32) []int32 {
	syms := ws.syms
	h := ws.heap[:0]
	for i := 0; i+1 < len(syms); i++ {
		if mv, ok := m.merges[pairKey(syms[i].id, syms[i+1].id)]; ok {
			h.push(mergeItem{mv.rank, int32(i), mv.id})
		}
	}
	for len(h) > 0 {
		top := h.pop()
		s := &syms[top.pos]
		if s.id < 0 || s.next < 0 {
			continue
		}
		r := &syms[s.next]
		mv, ok := m.merges[pairKey(s.id, r.id)]
		if !ok || mv.id != top.id {
			continue
		}
		s.id = top.id
		s.next = r.next
		r.id = -1
		if s.next >= 0 {
			syms[s.next].prev = top.pos
			if mv, ok := m.merges[pairKey(s.id, syms[s.next].id)]; ok {
				h.push(mergeItem{mv.rank, top.pos, mv.id})
			}
		}
		if s.prev >= 0 {
			if mv, ok := m.merges[pairKey(syms[s.prev].id, s.id)]; ok {
				h.push(mergeItem{mv.rank, s.prev, mv.id})
			}
		}
	}
	ws.heap = h
	for i := int32(0); i >= 0 && int(i) < len(syms); i = syms[i].next {
		dst = append(dst, syms[i].id)
	}
	return dst
}

// workspace holds scratch buffers for one Encode call.
type workspace struct {
	syms []bpeSym
	heap queue[mergeItem]
	buf  []byte
	segs []segment
	sub  []segment
	sp   []spmSym
	sph  queue[spmItem]
}

var workspacePool = sync.Pool{New: func() any { return new(workspace) }}

// wordCache remembers the ids of short pieces.
type wordCache struct {
	mu sync.RWMutex
	m  map[string][]int32
}

const (
	cacheMaxEntries = 1 << 16
	cacheMaxLen     = 256
)

func (c *wordCache) get(piece string) ([]int32, bool) {
	c.mu.RLock()
	ids, ok := c.m[piece]
	c.mu.RUnlock()
	return ids, ok
}

func (c *wordCache) put(piece string, ids []int32) {
	c.mu.Lock()
	if c.m == nil || len(c.m) >= cacheMaxEntries {
		c.m = make(map[string][]int32, 1024)
	}
	c.m[strings.Clone(piece)] = ids
	c.mu.Unlock()
}

// chunker cuts long text before each occurrence of a separator (like
// "▁") that does not follow another separator. That is exact when no
// vocabulary token holds the separator right after a different
// character: no merge can then cross such a cut, and merges on either
// side keep their relative order. Chunks are cached.
type chunker struct {
	sep   string
	cache wordCache
}

// newChunker returns a chunker for sep when the vocabulary allows it.
func newChunker(sep string, vocab map[string]int32) *chunker {
	if _, ok := vocab[sep]; !ok || sep == "" {
		return nil
	}
	for tok := range vocab {
		for j := 1; j < len(tok); {
			k := strings.Index(tok[j:], sep)
			if k < 0 {
				break
			}
			if !strings.HasSuffix(tok[:j+k], sep) {
				return nil
			}
			j += k + len(sep)
		}
	}
	return &chunker{sep: sep}
}

func (c *chunker) encode(text string, dst []int32, f func(string, []int32) []int32) []int32 {
	start := 0
	for i := len(c.sep); i < len(text); {
		k := strings.Index(text[i:], c.sep)
		if k < 0 {
			break
		}
		pos := i + k
		if !strings.HasSuffix(text[:pos], c.sep) {
			dst = c.encodeChunk(text[start:pos], dst, f)
			start = pos
		}
		i = pos + len(c.sep)
	}
	return c.encodeChunk(text[start:], dst, f)
}

func (c *chunker) encodeChunk(chunk string, dst []int32, f func(string, []int32) []int32) []int32 {
	if chunk == "" {
		return dst
	}
	if len(chunk) > cacheMaxLen {
		return f(chunk, dst)
	}
	if ids, ok := c.cache.get(chunk); ok {
		return append(dst, ids...)
	}
	n := len(dst)
	dst = f(chunk, dst)
	c.cache.put(chunk, append([]int32(nil), dst[n:]...))
	return dst
}
