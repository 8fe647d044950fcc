package tokenizer

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// SentencePiece piece types (ModelProto.SentencePiece.Type).
const (
	spmNormal      = 1
	spmUnknown     = 2
	spmControl     = 3
	spmUserDefined = 4
	spmUnused      = 5
	spmByte        = 6
)

// SentencePiece model types (TrainerSpec.ModelType).
const (
	spmModelUnigram = 1
	spmModelBPE     = 2
	spmModelWord    = 3
	spmModelChar    = 4
)

// spmPiece is one entry of a SentencePiece vocabulary.
type spmPiece struct {
	text  string
	score float32
	typ   int
}

// spmProto holds the parts of a SentencePiece ModelProto that matter here.
type spmProto struct {
	pieces []spmPiece

	modelType          int
	byteFallback       bool
	unkID, bosID       int32
	eosID, padID       int32
	treatWSAsSuffix    bool
	normName           string
	charsmap           []byte
	addDummyPrefix     bool
	removeExtraWS      bool
	escapeWS           bool
	unkSurface         string
	hasTrainerSpec     bool
	hasNormalizerSpec  bool
	denormalizerIsUsed bool
}

// pbReader reads protobuf wire format.
type pbReader struct {
	b   []byte
	off int
}

var errTruncated = errors.New("truncated protobuf")

func (r *pbReader) done() bool { return r.off >= len(r.b) }

func (r *pbReader) varint() (uint64, error) {
	var v uint64
	for shift := uint(0); shift < 64; shift += 7 {
		if r.off >= len(r.b) {
			return 0, errTruncated
		}
		c := r.b[r.off]
		r.off++
		v |= uint64(c&0x7f) << shift
		if c < 0x80 {
			return v, nil
		}
	}
	return 0, errors.New("varint too long")
}

func (r *pbReader) key() (field int, wire int, err error) {
	k, err := r.varint()
	if err != nil {
		return 0, 0, err
	}
	if k>>3 == 0 || k>>3 > math.MaxInt32 {
		return 0, 0, fmt.Errorf("bad field number %d", k>>3)
	}
	return int(k >> 3), int(k & 7), nil
}

func (r *pbReader) bytes() ([]byte, error) {
	n, err := r.varint()
	if err != nil {
		return nil, err
	}
	if n > uint64(len(r.b)-r.off) {
		return nil, errTruncated
	}
	b := r.b[r.off : r.off+int(n)]
	r.off += int(n)
	return b, nil
}

func (r *pbReader) fixed32() (uint32, error) {
	if len(r.b)-r.off < 4 {
		return 0, errTruncated
	}
	v := binary.LittleEndian.Uint32(r.b[r.off:])
	r.off += 4
	return v, nil
}

func (r *pbReader) skip(wire int) error {
	switch wire {
	case 0:
		_, err := r.varint()
		return err
	case 1:
		if len(r.b)-r.off < 8 {
			return errTruncated
		}
		r.off += 8
		return nil
	case 2:
		_, err := r.bytes()
		return err
	case 5:
		_, err := r.fixed32()
		return err
	}
	return fmt.Errorf("unsupported wire type %d", wire)
}

// fieldErr wraps an error with the message and field it happened in.
func fieldErr(msg string, field int, err error) error {
	return fmt.Errorf("%s field %d: %w", msg, field, err)
}

// parseSPM decodes a serialized ModelProto.
func parseSPM(data []byte) (*spmProto, error) {
	p := &spmProto{
		modelType: spmModelUnigram, unkID: 0, bosID: 1, eosID: 2, padID: -1,
		addDummyPrefix: true, removeExtraWS: true, escapeWS: true,
		unkSurface: " \u2047 ",
	}
	r := &pbReader{b: data}
	for !r.done() {
		field, wire, err := r.key()
		if err != nil {
			return nil, fmt.Errorf("ModelProto at byte %d: %w", r.off, err)
		}
		if wire != 2 || field > 3 {
			if err := r.skip(wire); err != nil {
				return nil, fieldErr("ModelProto", field, err)
			}
			continue
		}
		b, err := r.bytes()
		if err != nil {
			return nil, fieldErr("ModelProto", field, err)
		}
		switch field {
		case 1:
			piece, err := parseSPMPiece(b)
			if err != nil {
				return nil, fmt.Errorf("piece %d: %w", len(p.pieces), err)
			}
			p.pieces = append(p.pieces, piece)
		case 2:
			p.hasTrainerSpec = true
			if err := p.parseTrainerSpec(b); err != nil {
				return nil, fmt.Errorf("trainer_spec: %w", err)
			}
		case 3:
			p.hasNormalizerSpec = true
			if err := p.parseNormalizerSpec(b); err != nil {
				return nil, fmt.Errorf("normalizer_spec: %w", err)
			}
		}
	}
	return p, nil
}

func parseSPMPiece(b []byte) (spmPiece, error) {
	piece := spmPiece{typ: spmNormal}
	r := &pbReader{b: b}
	for !r.done() {
		field, wire, err := r.key()
		if err != nil {
			return piece, err
		}
		switch {
		case field == 1 && wire == 2:
			s, err := r.bytes()
			if err != nil {
				return piece, fieldErr("SentencePiece", field, err)
			}
			piece.text = string(s)
		case field == 2 && wire == 5:
			v, err := r.fixed32()
			if err != nil {
				return piece, fieldErr("SentencePiece", field, err)
			}
			piece.score = math.Float32frombits(v)
		case field == 3 && wire == 0:
			v, err := r.varint()
			if err != nil {
				return piece, fieldErr("SentencePiece", field, err)
			}
			piece.typ = int(v)
		default:
			if err := r.skip(wire); err != nil {
				return piece, fieldErr("SentencePiece", field, err)
			}
		}
	}
	return piece, nil
}

func (p *spmProto) parseTrainerSpec(b []byte) error {
	r := &pbReader{b: b}
	for !r.done() {
		field, wire, err := r.key()
		if err != nil {
			return err
		}
		if wire == 0 {
			v, err := r.varint()
			if err != nil {
				return fieldErr("TrainerSpec", field, err)
			}
			switch field {
			case 3:
				p.modelType = int(v)
			case 24:
				p.treatWSAsSuffix = v != 0
			case 35:
				p.byteFallback = v != 0
			case 40:
				p.unkID = int32(v)
			case 41:
				p.bosID = int32(v)
			case 42:
				p.eosID = int32(v)
			case 43:
				p.padID = int32(v)
			}
			continue
		}
		if field == 44 && wire == 2 {
			s, err := r.bytes()
			if err != nil {
				return fieldErr("TrainerSpec", field, err)
			}
			p.unkSurface = string(s)
			continue
		}
		if err := r.skip(wire); err != nil {
			return fieldErr("TrainerSpec", field, err)
		}
	}
	return nil
}

func (p *spmProto) parseNormalizerSpec(b []byte) error {
	r := &pbReader{b: b}
	for !r.done() {
		field, wire, err := r.key()
		if err != nil {
			return err
		}
		switch {
		case field == 1 && wire == 2:
			s, err := r.bytes()
			if err != nil {
				return fieldErr("NormalizerSpec", field, err)
			}
			p.normName = string(s)
		case field == 2 && wire == 2:
			s, err := r.bytes()
			if err != nil {
				return fieldErr("NormalizerSpec", field, err)
			}
			p.charsmap = s
		case field >= 3 && field <= 5 && wire == 0:
			v, err := r.varint()
			if err != nil {
				return fieldErr("NormalizerSpec", field, err)
			}
			switch field {
			case 3:
				p.addDummyPrefix = v != 0
			case 4:
				p.removeExtraWS = v != 0
			case 5:
				p.escapeWS = v != 0
			}
		default:
			if err := r.skip(wire); err != nil {
				return fieldErr("NormalizerSpec", field, err)
			}
		}
	}
	return nil
}
