package plugins

import (
	"runtime"
	"strings"
	"testing"
)

func TestSetProcs(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	for _, tc := range []struct {
		value   string
		want    int    // GOMAXPROCS after; 0: unchanged
		errPart string // "" for no error
	}{
		{value: "", want: 0},
		{value: "1", want: 1},
		{value: "3", want: 3},
		{value: "0", errPart: "at least 1"},
		{value: "-2", errPart: "at least 1"},
		{value: "two", errPart: `"two"`},
		{value: "1.5", errPart: "whole number"},
		{value: "99999", errPart: "whole number"},
	} {
		runtime.GOMAXPROCS(2)
		err := setProcs(tc.value)
		switch {
		case tc.errPart == "" && err != nil:
			t.Errorf("%s=%q: %v", ProcsEnv, tc.value, err)
		case tc.errPart != "" && (err == nil || !strings.Contains(err.Error(), tc.errPart)):
			t.Errorf("%s=%q: error %v, want one saying %q", ProcsEnv, tc.value, err, tc.errPart)
		}
		want := tc.want
		if want == 0 {
			want = 2
		}
		if got := runtime.GOMAXPROCS(0); got != want {
			t.Errorf("%s=%q: GOMAXPROCS %d, want %d", ProcsEnv, tc.value, got, want)
		}
	}
}
