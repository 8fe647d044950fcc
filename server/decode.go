package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"reflect"
	"strings"
	"time"
)

// bodyReadTimeout bounds the time to receive a request body.
const bodyReadTimeout = 30 * time.Second

// readBody reads the request body within limit bytes: 413 beyond it.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, *apiError) {
	tooLarge := &apiError{Status: http.StatusRequestEntityTooLarge, Type: typeInvalidRequest, Code: "request_too_large",
		Message: fmt.Sprintf("request body exceeds the limit of %d bytes", limit)}
	if r.ContentLength > limit {
		return nil, tooLarge
	}
	// a client must send its body in reasonable time (slow-body attacks);
	// the deadline is cleared after, so that it does not end the response
	rc := http.NewResponseController(w)
	rc.SetReadDeadline(time.Now().Add(bodyReadTimeout))
	defer rc.SetReadDeadline(time.Time{})
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, tooLarge
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return nil, &apiError{Status: http.StatusRequestTimeout, Type: typeInvalidRequest, Code: "request_timeout",
				Message: fmt.Sprintf("the request body did not arrive within %v", bodyReadTimeout)}
		}
		return nil, badRequest("", "reading the request body: %v", err)
	}
	return body, nil
}

// decodeJSON unmarshals a request body into v, turning the decoder's errors
// into 400s that name the field and the types involved.
func decodeJSON(body []byte, v any) *apiError {
	if len(bytes.TrimSpace(body)) == 0 {
		return badRequest("", "the request body is empty; expected a JSON object")
	}
	err := json.Unmarshal(body, v)
	if err == nil {
		return nil
	}
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return badRequest("", "malformed JSON at byte %d: %v", syn.Offset, syn)
	case errors.As(err, &typ):
		typ.Field = strings.ReplaceAll(typ.Field, "samplingFields.", "") // the embedded struct is not part of the API
		if typ.Field == "" {
			return badRequest("", "the request body must be a JSON object, not %s", jsonValueName(typ.Value))
		}
		return badRequest(typ.Field, "%s: expected %s, got %s", typ.Field, goTypeName(typ.Type), jsonValueName(typ.Value))
	case errors.Is(err, io.ErrUnexpectedEOF):
		return badRequest("", "malformed JSON: unexpected end of input")
	}
	var fe *fieldError
	if errors.As(err, &fe) {
		return badRequest(fe.field, "%s", fe.msg)
	}
	return badRequest("", "malformed JSON: %v", err)
}

// fieldError is returned by custom unmarshalers to name their field.
type fieldError struct{ field, msg string }

func (e *fieldError) Error() string { return e.msg }

// jsonValueName describes the JSON value the decoder found ("string",
// "number 1.5", "array" ...).
func jsonValueName(v string) string {
	switch {
	case v == "bool":
		return "a boolean"
	case v == "array", v == "object":
		return "an " + v
	case strings.HasPrefix(v, "number "):
		return "the number " + strings.TrimPrefix(v, "number ")
	case v == "number":
		return "a number"
	case v == "string":
		return "a string"
	}
	return v
}

// goTypeName names the JSON type a Go field holds.
func goTypeName(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "a string"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Map, reflect.Struct:
		return "an object"
	}
	return t.String()
}

// rawKind returns the JSON type of a raw value: "null", "string", "number",
// "boolean", "array", "object", or "" when empty.
func rawKind(raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return ""
	}
	switch raw[0] {
	case 'n':
		return "null"
	case '"':
		return "string"
	case 't', 'f':
		return "boolean"
	case '[':
		return "array"
	case '{':
		return "object"
	}
	return "number"
}

// absent reports whether an optional raw field was left out or null.
func absent(raw json.RawMessage) bool {
	k := rawKind(raw)
	return k == "" || k == "null"
}

func article(kind string) string {
	switch kind {
	case "array", "object":
		return "an " + kind
	case "null":
		return "null"
	}
	return "a " + kind
}
