package intent

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/big"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
)

// maxDepth bounds the nesting Canonical accepts, like Python's recursion limit
// bounds json.dumps; it keeps a hostile document from exhausting the stack.
const maxDepth = 512

// maxIntDigits is CPython's default limit on int/str conversion
// (sys.get_int_max_str_digits()): json.loads refuses longer integers, and so
// do we, which also bounds the cost of a hostile number.
const maxIntDigits = 4300

// ErrNotCanonicalizable reports a value that has no canonical JSON form: NaN or
// an infinity (Python would print the non-JSON tokens NaN and Infinity), a
// string that is not valid UTF-8, a json.Number that is not a JSON number or
// is an integer of more than 4300 digits (Python's own limit), a
// map whose keys are not strings, or nesting deeper than 512 levels.
var ErrNotCanonicalizable = errors.New("value has no canonical JSON form")

// Canonical returns the bytes Python produces with
//
//	json.dumps(v, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
//
// for a JSON value v. v is what json.Decoder.UseNumber yields (map[string]any,
// []any, string, json.Number, bool, nil) or Go numbers. Numbers follow Python's
// int/float split:
//
//   - a json.Number whose text has no '.', 'e' or 'E' is an integer and prints
//     as one, with arbitrary precision ("60" stays 60, "-0" becomes 0);
//   - any other json.Number is a float ("60.0", "6e1") and prints as Python's
//     repr of the nearest float64 (60.0);
//   - Go float32/float64 values are floats (60.0 prints as 60.0); Go integer
//     types are integers.
//
// So the SDK's "expires_in": 60.0 keeps its ".0" through a UseNumber decode and
// a re-encode. Strings are escaped as Python does with ensure_ascii: \" \\ \n
// \r \t \b \f, other characters below U+0020 and from U+007F up as \u00XX
// (lowercase hex), characters beyond U+FFFF as a UTF-16 surrogate pair. Keys
// are sorted by code point, which for valid UTF-8 is byte order.
//
// Other Go values (structs, typed maps and slices, json.Marshaler) are encoded
// with encoding/json first and then canonicalized, so their float fields that
// hold integral values come out as integers: build plain values when that
// matters.
func Canonical(v any) ([]byte, error) {
	// Sized once: growing by append from a small buffer allocates about
	// five times a large output (large slices grow by a quarter).
	n := canonicalSize(v, 0)
	return appendCanonical(make([]byte, 0, n+n/16+64), v, 0)
}

// canonicalSize estimates the canonical size of v (exact for ASCII text
// without escapes).
func canonicalSize(v any, depth int) int {
	if depth > maxDepth {
		return 0
	}
	switch x := v.(type) {
	case string:
		return len(x) + 2
	case json.Number:
		return len(x)
	case map[string]any:
		n := 2
		for k, e := range x {
			n += len(k) + 4 + canonicalSize(e, depth+1)
		}
		return n
	case []any:
		n := 2
		for _, e := range x {
			n += 1 + canonicalSize(e, depth+1)
		}
		return n
	default:
		return 8
	}
}

func appendCanonical(b []byte, v any, depth int) ([]byte, error) {
	if depth > maxDepth {
		return nil, fmt.Errorf("%w: nesting deeper than %d", ErrNotCanonicalizable, maxDepth)
	}
	switch x := v.(type) {
	case nil:
		return append(b, "null"...), nil
	case bool:
		if x {
			return append(b, "true"...), nil
		}
		return append(b, "false"...), nil
	case string:
		return appendPyString(b, x)
	case json.Number:
		return appendNumber(b, string(x))
	case float64:
		return appendPyFloat(b, x)
	case float32:
		return appendPyFloat(b, float64(x))
	case int:
		return strconv.AppendInt(b, int64(x), 10), nil
	case int8:
		return strconv.AppendInt(b, int64(x), 10), nil
	case int16:
		return strconv.AppendInt(b, int64(x), 10), nil
	case int32:
		return strconv.AppendInt(b, int64(x), 10), nil
	case int64:
		return strconv.AppendInt(b, x, 10), nil
	case uint:
		return strconv.AppendUint(b, uint64(x), 10), nil
	case uint8:
		return strconv.AppendUint(b, uint64(x), 10), nil
	case uint16:
		return strconv.AppendUint(b, uint64(x), 10), nil
	case uint32:
		return strconv.AppendUint(b, uint64(x), 10), nil
	case uint64:
		return strconv.AppendUint(b, x, 10), nil
	case map[string]any:
		if x == nil {
			return append(b, "null"...), nil
		}
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		// Python sorts str keys by code point; for valid UTF-8 (checked
		// when each key is written) byte order is code point order.
		sort.Strings(keys)
		b = append(b, '{')
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			var err error
			if b, err = appendPyString(b, k); err != nil {
				return nil, err
			}
			b = append(b, ':')
			if b, err = appendCanonical(b, x[k], depth+1); err != nil {
				return nil, err
			}
		}
		return append(b, '}'), nil
	case []any:
		if x == nil {
			return append(b, "null"...), nil
		}
		b = append(b, '[')
		for i, e := range x {
			if i > 0 {
				b = append(b, ',')
			}
			var err error
			if b, err = appendCanonical(b, e, depth+1); err != nil {
				return nil, err
			}
		}
		return append(b, ']'), nil
	case json.RawMessage:
		d, err := decodeJSON(x)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrNotCanonicalizable, err)
		}
		return appendCanonical(b, d, depth)
	}
	return appendReflect(b, v, depth)
}

// appendReflect handles typed maps, slices and pointers element by element (so
// a []float64 keeps its floats) and anything else through encoding/json.
func appendReflect(b []byte, v any, depth int) ([]byte, error) {
	rv := reflect.ValueOf(v)
	if _, ok := v.(json.Marshaler); !ok {
		switch rv.Kind() {
		case reflect.Pointer, reflect.Interface:
			if rv.IsNil() {
				return append(b, "null"...), nil
			}
			return appendCanonical(b, rv.Elem().Interface(), depth+1)
		case reflect.Map:
			if rv.Type().Key().Kind() != reflect.String {
				return nil, fmt.Errorf("%w: map key type %s", ErrNotCanonicalizable, rv.Type().Key())
			}
			if rv.IsNil() {
				return append(b, "null"...), nil
			}
			m := make(map[string]any, rv.Len())
			for it := rv.MapRange(); it.Next(); {
				m[it.Key().String()] = it.Value().Interface()
			}
			return appendCanonical(b, m, depth)
		case reflect.Slice, reflect.Array:
			if rv.Type().Elem().Kind() == reflect.Uint8 {
				break // encoding/json writes bytes as base64; keep that
			}
			if rv.Kind() == reflect.Slice && rv.IsNil() {
				return append(b, "null"...), nil
			}
			s := make([]any, rv.Len())
			for i := range s {
				s[i] = rv.Index(i).Interface()
			}
			return appendCanonical(b, s, depth)
		case reflect.String:
			return appendPyString(b, rv.String())
		case reflect.Bool:
			return appendCanonical(b, rv.Bool(), depth)
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
			return strconv.AppendInt(b, rv.Int(), 10), nil
		case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
			return strconv.AppendUint(b, rv.Uint(), 10), nil
		case reflect.Float32, reflect.Float64:
			return appendPyFloat(b, rv.Float())
		}
	}
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotCanonicalizable, err)
	}
	d, err := decodeJSON(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotCanonicalizable, err)
	}
	return appendCanonical(b, d, depth+1)
}

// decodeJSON decodes one JSON value with UseNumber and refuses trailing data.
func decodeJSON(data []byte) (any, error) { return DecodeJSON(data) }

// appendNumber writes a json.Number the way Python prints what json.loads made
// of the same text: an int when the text is an integer, else a float.
func appendNumber(b []byte, s string) ([]byte, error) {
	isFloat, ok := scanNumber(s)
	if !ok {
		return nil, fmt.Errorf("%w: %q is not a JSON number", ErrNotCanonicalizable, s)
	}
	if !isFloat {
		if len(s) <= 18 { // fits an int64 without overflow
			n, err := strconv.ParseInt(s, 10, 64)
			if err == nil {
				return strconv.AppendInt(b, n, 10), nil
			}
		}
		if digits := len(strings.TrimPrefix(s, "-")); digits > maxIntDigits {
			return nil, fmt.Errorf("%w: integer of %d digits, more than Python's %d", ErrNotCanonicalizable, digits, maxIntDigits)
		}
		var n big.Int
		if _, ok := n.SetString(s, 10); !ok {
			return nil, fmt.Errorf("%w: %q is not an integer", ErrNotCanonicalizable, s)
		}
		return n.Append(b, 10), nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil && !math.IsInf(f, 0) {
		return nil, fmt.Errorf("%w: %q: %v", ErrNotCanonicalizable, s, err)
	}
	return appendPyFloat(b, f)
}

// scanNumber reports whether s is a JSON number and whether Python's json
// module would read it as a float (it has a fraction or an exponent).
func scanNumber(s string) (isFloat, ok bool) {
	i := 0
	if i < len(s) && s[i] == '-' {
		i++
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case i < len(s) && s[i] >= '1' && s[i] <= '9':
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
	default:
		return false, false
	}
	if i < len(s) && s[i] == '.' {
		isFloat = true
		i++
		start := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		if i == start {
			return false, false
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		isFloat = true
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		start := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		if i == start {
			return false, false
		}
	}
	return isFloat, i == len(s)
}

// appendPyFloat writes Python's repr(f): the shortest digits that round-trip,
// in fixed notation when the decimal exponent is in [-4, 16), else in
// scientific notation with at least two exponent digits; an integral value in
// fixed notation gets ".0".
func appendPyFloat(b []byte, f float64) ([]byte, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return nil, fmt.Errorf("%w: %v is not a JSON number", ErrNotCanonicalizable, f)
	}
	if f == 0 {
		if math.Signbit(f) {
			return append(b, "-0.0"...), nil
		}
		return append(b, "0.0"...), nil
	}
	var tmp [32]byte
	e := strconv.AppendFloat(tmp[:0], f, 'e', -1, 64)
	i := bytes.LastIndexByte(e, 'e')
	exp, _ := strconv.Atoi(string(e[i+1:]))
	if decpt := exp + 1; decpt <= -4 || decpt > 16 {
		// Go's 'e' format matches Python's here: "1e+16", "1.5e-07".
		return append(b, e...), nil
	}
	start := len(b)
	b = strconv.AppendFloat(b, f, 'f', -1, 64)
	if bytes.IndexByte(b[start:], '.') < 0 {
		b = append(b, ".0"...)
	}
	return b, nil
}

const hexDigits = "0123456789abcdef"

// appendPyString writes s as Python's json.dumps does with ensure_ascii=True.
func appendPyString(b []byte, s string) ([]byte, error) {
	// One allocation for a long string, rather than append doubling the
	// buffer byte by byte: large arguments are canonicalized several times
	// per call (docs/gateway.md, "Limits").
	b = slices.Grow(b, len(s)+2)
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			i++
			b = appendEscapedASCII(b, c, true)
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			return nil, fmt.Errorf("%w: string is not valid UTF-8", ErrNotCanonicalizable)
		}
		i += size
		if r > 0xffff {
			r -= 0x10000
			b = appendU4(b, 0xd800+(r>>10)&0x3ff)
			b = appendU4(b, 0xdc00+r&0x3ff)
			continue
		}
		b = appendU4(b, r)
	}
	return append(b, '"'), nil
}

// appendEscapedASCII writes one ASCII byte inside a JSON string the way both
// Python's json.dumps and JavaScript's JSON.stringify do: the short escapes,
// \u00XX for other control characters (and for DEL when del is set, which
// Python does and JavaScript does not), the byte itself otherwise.
func appendEscapedASCII(b []byte, c byte, del bool) []byte {
	switch {
	case c == '"':
		return append(b, '\\', '"')
	case c == '\\':
		return append(b, '\\', '\\')
	case c == '\n':
		return append(b, '\\', 'n')
	case c == '\r':
		return append(b, '\\', 'r')
	case c == '\t':
		return append(b, '\\', 't')
	case c == '\b':
		return append(b, '\\', 'b')
	case c == '\f':
		return append(b, '\\', 'f')
	case c < 0x20 || (del && c == 0x7f):
		return appendU4(b, rune(c))
	default:
		return append(b, c)
	}
}

func appendU4(b []byte, r rune) []byte {
	return append(b, '\\', 'u', hexDigits[r>>12&0xf], hexDigits[r>>8&0xf], hexDigits[r>>4&0xf], hexDigits[r&0xf])
}
