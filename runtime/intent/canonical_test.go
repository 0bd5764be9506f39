package intent

import (
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
)

// The want strings were produced by CPython 3 with
// json.dumps(v, sort_keys=True, separators=(",", ":"), ensure_ascii=True).
func TestCanonicalGoValues(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   any
		want string
	}{
		{"nil", nil, `null`},
		{"true", true, `true`},
		{"false", false, `false`},
		{"0.1", 0.1, `0.1`},
		{"1e21", 1e21, `1e+21`},
		{"negative zero", math.Copysign(0, -1), `-0.0`},
		{"zero", 0.0, `0.0`},
		{"100.0", 100.0, `100.0`},
		{"60.0", 60.0, `60.0`},
		{"1e16", 1e16, `1e+16`},
		{"1e15", 1e15, `1000000000000000.0`},
		{"1.5e-07", 1.5e-07, `1.5e-07`},
		{"0.0001", 0.0001, `0.0001`},
		{"0.00001", 0.00001, `1e-05`},
		{"2.5e-5", 2.5e-5, `2.5e-05`},
		{"timestamp", 1700000000.5, `1700000000.5`},
		{"17 digits", 123456789012345678.0, `1.2345678901234568e+17`},
		{"1e22", 1e22, `1e+22`},
		{"1e100", 1e100, `1e+100`},
		{"smallest subnormal", 5e-324, `5e-324`},
		{"max float", math.MaxFloat64, `1.7976931348623157e+308`},
		{"-1.25", -1.25, `-1.25`},
		{"float32", float32(0.5), `0.5`},
		{"int", 42, `42`},
		{"int64 min", int64(math.MinInt64), `-9223372036854775808`},
		{"uint64 max", uint64(math.MaxUint64), `18446744073709551615`},
		{"latin", "é", `"\u00e9"`},
		{"emoji surrogate pair", "😀", `"\ud83d\ude00"`},
		{"controls and DEL", "\x00\x1f\x7f\u0080\u2028\ufeff", `"\u0000\u001f\u007f\u0080\u2028\ufeff"`},
		{"short escapes", "\"\\/\n\r\t\b\f", `"\"\\/\n\r\t\b\f"`},
		{"empty object", map[string]any{}, `{}`},
		{"empty list", []any{}, `[]`},
		{"nil map", map[string]any(nil), `null`},
		{"nested sorting", map[string]any{"b": 1, "a": []any{1, 2, map[string]any{"d": nil, "c": true}}}, `{"a":[1,2,{"c":true,"d":null}],"b":1}`},
		// Code point order: U+FFFF sorts before U+1F600 (UTF-16 order would not).
		{"key order by code point", map[string]any{"é": 1, "z": 2, "😀": 3, "\uffff": 4, "A": 5}, `{"A":5,"z":2,"\u00e9":1,"\uffff":4,"\ud83d\ude00":3}`},
		{"typed slice keeps floats", []float64{1, 2.5}, `[1.0,2.5]`},
		{"typed map", map[string]string{"b": "x", "a": "y"}, `{"a":"y","b":"x"}`},
		{"struct through encoding/json", struct {
			B int    `json:"b"`
			A string `json:"a"`
		}{1, "é"}, `{"a":"\u00e9","b":1}`},
		{"raw message", json.RawMessage(`{"z": 60.0, "a": 60}`), `{"a":60,"z":60.0}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Canonical(tc.in)
			if err != nil {
				t.Fatalf("Canonical(%#v): %v", tc.in, err)
			}
			if string(got) != tc.want {
				t.Errorf("Canonical(%#v) = %s, want %s", tc.in, got, tc.want)
			}
		})
	}
}

// Numbers decoded with UseNumber keep Python's int/float split.
func TestCanonicalDecodedNumbers(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`60`, `60`},
		{`60.0`, `60.0`},
		{`6e1`, `60.0`},
		{`6E+1`, `60.0`},
		{`-0`, `0`},
		{`-0.0`, `-0.0`},
		{`0.10`, `0.1`},
		{`1e21`, `1e+21`},
		{`1.0e2`, `100.0`},
		{`12345678901234567890123`, `12345678901234567890123`},
		{`-12345678901234567890123`, `-12345678901234567890123`},
		{`9007199254740993`, `9007199254740993`},
		{`9007199254740993.0`, `9007199254740992.0`},
		{`1e-400`, `0.0`},
		{`1700000060.5`, `1700000060.5`},
		{strings.Repeat("9", 4300), strings.Repeat("9", 4300)},
	} {
		v, err := decodeJSON([]byte(tc.in))
		if err != nil {
			t.Fatalf("decode %s: %v", tc.in, err)
		}
		got, err := Canonical(v)
		if err != nil {
			t.Fatalf("Canonical(%s): %v", tc.in, err)
		}
		if string(got) != tc.want {
			t.Errorf("Canonical(%s) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

func TestCanonicalRefuses(t *testing.T) {
	deep := any("x")
	for i := 0; i < maxDepth+2; i++ {
		deep = []any{deep}
	}
	for _, tc := range []struct {
		name string
		in   any
	}{
		{"NaN", math.NaN()},
		{"+Inf", math.Inf(1)},
		{"overflowing number", json.Number("1e400")},
		{"bad number", json.Number("01")},
		{"integer longer than Python reads", json.Number(strings.Repeat("9", 4301))},
		{"not a number", json.Number("abc")},
		{"invalid UTF-8", "\xff"},
		{"invalid UTF-8 key", map[string]any{"\xc3": 1}},
		{"int keys", map[int]string{1: "a"}},
		{"too deep", deep},
		{"nested NaN", map[string]any{"a": []any{math.NaN()}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Canonical(tc.in)
			if !errors.Is(err, ErrNotCanonicalizable) {
				t.Errorf("Canonical = %q, %v; want ErrNotCanonicalizable", got, err)
			}
		})
	}
}

// Go sorts strings by bytes and Python by code point: for valid UTF-8 they
// agree. Check it over keys from every UTF-8 length.
func TestByteOrderIsCodePointOrder(t *testing.T) {
	runes := []rune{0, 'A', 0x7f, 0x80, 0x7ff, 0x800, 0xd7ff, 0xe000, 0xfffd, 0xffff, 0x10000, 0x1f600, 0x10ffff}
	for i := range runes {
		for j := range runes {
			a, b := string(runes[i]), string(runes[j])
			if (a < b) != (runes[i] < runes[j]) {
				t.Errorf("%U vs %U: byte order %v, code point order %v", runes[i], runes[j], a < b, runes[i] < runes[j])
			}
		}
	}
}

func TestCanonicalRoundTrip(t *testing.T) {
	in := `{"z":[1,2.5,-0.0,"é😀\u0000"],"a":{"y":null,"x":true,"w":1e300},"m":12345678901234567890}`
	v, err := decodeJSON([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	c1, err := Canonical(v)
	if err != nil {
		t.Fatal(err)
	}
	v2, err := decodeJSON(c1)
	if err != nil {
		t.Fatalf("canonical output %s is not JSON: %v", c1, err)
	}
	c2, err := Canonical(v2)
	if err != nil {
		t.Fatal(err)
	}
	if string(c1) != string(c2) {
		t.Errorf("canonical form not stable:\n%s\n%s", c1, c2)
	}
	if !reflect.DeepEqual(v2, mustDecode(t, string(c2))) {
		t.Errorf("round trip changed the value")
	}
}

func mustDecode(t testing.TB, s string) any {
	t.Helper()
	v, err := decodeJSON([]byte(s))
	if err != nil {
		t.Fatalf("decode %s: %v", s, err)
	}
	return v
}
