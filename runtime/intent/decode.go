package intent

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"unicode/utf8"
)

// DecodeJSON decodes one JSON value exactly as a json.Decoder with
// UseNumber does (objects as map[string]any, arrays as []any, numbers as
// json.Number with their text, the last of duplicate keys winning, invalid
// UTF-8 replaced by U+FFFD) and refuses trailing data. It decodes in place:
// a json.Decoder copies its input into a buffer it grows by doubling, up to
// four times the input's size in allocations, which a large tool call pays
// several times.
//
// The standard library decides validity (json.Valid) and decodes every
// string that has an escape or invalid UTF-8, so this parser only walks
// input already known to be valid JSON. Invalid input goes to the
// json.Decoder, for its error message.
func DecodeJSON(data []byte) (any, error) {
	if !json.Valid(data) {
		return decodeStream(data)
	}
	p := jsonParser{data: data}
	p.space()
	return p.value()
}

// decodeStream is the json.Decoder path, for invalid input.
func decodeStream(data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("trailing data after JSON value")
	}
	return v, nil
}

// jsonParser walks valid JSON (checked by json.Valid before).
type jsonParser struct {
	data []byte
	i    int
}

func (p *jsonParser) space() {
	for p.i < len(p.data) {
		switch p.data[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

func (p *jsonParser) value() (any, error) {
	switch p.data[p.i] {
	case '{':
		p.i++
		m := make(map[string]any)
		p.space()
		if p.data[p.i] == '}' {
			p.i++
			return m, nil
		}
		for {
			p.space()
			k, err := p.str()
			if err != nil {
				return nil, err
			}
			p.space()
			p.i++ // ':'
			p.space()
			v, err := p.value()
			if err != nil {
				return nil, err
			}
			m[k] = v
			p.space()
			c := p.data[p.i]
			p.i++
			if c == '}' {
				return m, nil
			}
		}
	case '[':
		p.i++
		a := make([]any, 0)
		p.space()
		if p.data[p.i] == ']' {
			p.i++
			return a, nil
		}
		for {
			p.space()
			v, err := p.value()
			if err != nil {
				return nil, err
			}
			a = append(a, v)
			p.space()
			c := p.data[p.i]
			p.i++
			if c == ']' {
				return a, nil
			}
		}
	case '"':
		return p.str()
	case 't':
		p.i += len("true")
		return true, nil
	case 'f':
		p.i += len("false")
		return false, nil
	case 'n':
		p.i += len("null")
		return nil, nil
	default:
		start := p.i
		for p.i < len(p.data) && isNumberByte(p.data[p.i]) {
			p.i++
		}
		return json.Number(p.data[start:p.i]), nil
	}
}

func isNumberByte(c byte) bool {
	return c >= '0' && c <= '9' || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E'
}

// str reads the string at p.i. A plain one (no escape, valid UTF-8) is
// copied as is, which is what encoding/json does with it; any other is
// decoded by encoding/json itself.
func (p *jsonParser) str() (string, error) {
	start := p.i
	plain := true
	j := start + 1
	for {
		c := p.data[j]
		if c == '"' {
			break
		}
		if c == '\\' {
			plain = false
			j += 2
			continue
		}
		j++
	}
	p.i = j + 1
	inner := p.data[start+1 : j]
	if plain && utf8.Valid(inner) {
		return string(inner), nil
	}
	var s string
	if err := json.Unmarshal(p.data[start:j+1], &s); err != nil {
		return "", err
	}
	return s, nil
}
