package plugins

import (
	"reflect"
	"testing"
)

func TestResolve(t *testing.T) {
	env := map[string]string{"TOKEN": "t0k", "KEY": "k3y"}
	getenv := func(k string) string { return env[k] }
	in := ServerConfig{
		ID:      "s",
		Headers: map[string]string{"Authorization": "Bearer $TOKEN", "X-API-Key": "${KEY}", "X-Static": "plain"},
		Env:     map[string]string{"API_KEY": "$KEY", "MODE": "prod"},
	}
	got, err := resolve(in, getenv)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"Authorization": "Bearer t0k", "X-API-Key": "k3y", "X-Static": "plain"}
	if !reflect.DeepEqual(got.Headers, want) {
		t.Errorf("headers: got %v, want %v", got.Headers, want)
	}
	if got.Env["API_KEY"] != "k3y" || got.Env["MODE"] != "prod" {
		t.Errorf("env: got %v", got.Env)
	}
	if in.Headers["Authorization"] != "Bearer $TOKEN" {
		t.Errorf("resolve changed its input: %v", in.Headers)
	}

	_, err = resolve(ServerConfig{Headers: map[string]string{"Authorization": "Bearer $MISSING"}}, getenv)
	if err == nil || err.Error() != "$MISSING is not set" {
		t.Errorf("unset variable: got %v, want $MISSING is not set", err)
	}
}

func TestParseSHA256(t *testing.T) {
	hex := "9f2c000000000000000000000000000000000000000000000000000000000001"
	for _, s := range []string{hex, "sha256:" + hex, " SHA256:" + "9F2C000000000000000000000000000000000000000000000000000000000001"} {
		if _, err := parseSHA256(s); err != nil {
			t.Errorf("parseSHA256(%q): %v", s, err)
		}
	}
	for _, s := range []string{"", "abc", hex + "00", "zz" + hex[2:]} {
		if _, err := parseSHA256(s); err == nil {
			t.Errorf("parseSHA256(%q): no error", s)
		}
	}
}
