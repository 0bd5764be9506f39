package deploy

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
)

// instruction is one Dockerfile instruction: its keyword in upper case, its
// flags (--from=build) and the rest of the line.
type instruction struct {
	Line  int
	Cmd   string
	Flags []string
	Args  string
}

// stage is a build stage: FROM up to the next FROM.
type stage struct {
	Image, Name string
	Body        []instruction
}

// parseDockerfile splits a Dockerfile into instructions: comments and blank
// lines dropped, backslash continuations joined. It follows the Dockerfile
// reference's syntax closely enough to check our own file; no docker engine
// runs here.
func parseDockerfile(src string) ([]instruction, error) {
	var out []instruction
	lines := strings.Split(src, "\n")
	for i := 0; i < len(lines); i++ {
		line := strings.TrimSpace(lines[i])
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		start := i + 1
		for strings.HasSuffix(line, "\\") {
			line = strings.TrimSuffix(line, "\\")
			for {
				i++
				if i == len(lines) {
					return nil, fmt.Errorf("line %d: continuation at the end of the file", start)
				}
				next := strings.TrimSpace(lines[i])
				if strings.HasPrefix(next, "#") {
					continue // comments inside a continued instruction are dropped
				}
				line += " " + next
				break
			}
		}
		cmd, rest, _ := strings.Cut(line, " ")
		if !regexp.MustCompile(`^[A-Za-z]+$`).MatchString(cmd) {
			return nil, fmt.Errorf("line %d: %q is not an instruction", start, cmd)
		}
		in := instruction{Line: start, Cmd: strings.ToUpper(cmd)}
		rest = strings.TrimSpace(rest)
		for strings.HasPrefix(rest, "--") {
			f, r, _ := strings.Cut(rest, " ")
			in.Flags = append(in.Flags, f)
			rest = strings.TrimSpace(r)
		}
		in.Args = rest
		out = append(out, in)
	}
	return out, nil
}

// stages groups instructions by FROM; anything before the first FROM other
// than ARG is an error, as in docker.
func stages(ins []instruction) ([]stage, error) {
	var out []stage
	for _, in := range ins {
		if in.Cmd == "FROM" {
			f := strings.Fields(in.Args)
			if len(f) == 0 {
				return nil, fmt.Errorf("line %d: FROM without an image", in.Line)
			}
			st := stage{Image: f[0]}
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				st.Name = f[2]
			} else if len(f) != 1 {
				return nil, fmt.Errorf("line %d: FROM %s: want IMAGE [AS NAME]", in.Line, in.Args)
			}
			out = append(out, st)
			continue
		}
		if len(out) == 0 {
			if in.Cmd == "ARG" {
				continue
			}
			return nil, fmt.Errorf("line %d: %s before the first FROM", in.Line, in.Cmd)
		}
		out[len(out)-1].Body = append(out[len(out)-1].Body, in)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no FROM")
	}
	return out, nil
}

// execForm decodes an instruction's JSON array form (["a", "b"]); ok is
// false for the shell form, which needs /bin/sh.
func execForm(args string) ([]string, bool) {
	var v []string
	if err := json.Unmarshal([]byte(args), &v); err != nil {
		return nil, false
	}
	return v, true
}

func TestDockerfile(t *testing.T) {
	src, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	ins, err := parseDockerfile(string(src))
	if err != nil {
		t.Fatalf("Dockerfile: %v", err)
	}
	sts, err := stages(ins)
	if err != nil {
		t.Fatalf("Dockerfile: %v", err)
	}
	if len(sts) < 2 {
		t.Fatalf("Dockerfile has %d stage(s), want a build stage and a runtime stage", len(sts))
	}
	build, final := sts[0], sts[len(sts)-1]

	// The build stage uses the Go of go.mod and builds a static binary.
	gomod, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	goVersion := regexp.MustCompile(`(?m)^go (\S+)$`).FindSubmatch(gomod)
	if goVersion == nil {
		t.Fatal("go.mod has no go line")
	}
	if want := "golang:" + string(goVersion[1]); build.Image != want && !strings.HasPrefix(build.Image, want+"-") {
		t.Errorf("build stage FROM %s, want %s (go.mod's go line)", build.Image, want)
	}
	var cgoOff, builds bool
	for _, in := range build.Body {
		if (in.Cmd == "ENV" || in.Cmd == "RUN") && strings.Contains(in.Args, "CGO_ENABLED=0") {
			cgoOff = true
		}
		if in.Cmd == "RUN" && strings.Contains(in.Args, "go build") {
			builds = true
			if !strings.Contains(in.Args, "./cmd/armoriq") {
				t.Errorf("line %d: the build does not build ./cmd/armoriq: %s", in.Line, in.Args)
			}
			if !strings.Contains(in.Args, "-trimpath") {
				t.Errorf("line %d: go build without -trimpath (the binary would carry build paths)", in.Line)
			}
		}
	}
	if !cgoOff {
		t.Error("the build stage never sets CGO_ENABLED=0: the binary would not be static")
	}
	if !builds {
		t.Error("the build stage has no RUN go build")
	}
	if _, err := os.Stat("../cmd/armoriq/main.go"); err != nil {
		t.Errorf("the Dockerfile builds ./cmd/armoriq, which is missing: %v", err)
	}

	// The runtime stage has no shell and runs as a non-root user.
	if !strings.HasPrefix(final.Image, "gcr.io/distroless/static") && final.Image != "scratch" {
		t.Errorf("runtime stage FROM %s, want distroless static or scratch (no shell, no libc)", final.Image)
	}
	var user string
	var entry []string
	for _, in := range final.Body {
		switch in.Cmd {
		case "RUN", "SHELL", "ADD":
			t.Errorf("line %d: %s in the runtime stage (it has no shell; ADD can fetch from the network)", in.Line, in.Cmd)
		case "USER":
			user = in.Args
		case "ENTRYPOINT", "CMD":
			v, ok := execForm(in.Args)
			if !ok {
				t.Errorf("line %d: %s in shell form needs /bin/sh, which the image does not have: use the JSON form", in.Line, in.Cmd)
			}
			if in.Cmd == "ENTRYPOINT" {
				entry = v
			}
		case "COPY":
			if len(in.Flags) == 0 || !strings.HasPrefix(in.Flags[0], "--from=") {
				t.Errorf("line %d: COPY into the runtime stage from the build context: only the built binary belongs there", in.Line)
			}
		}
	}
	uid, _, _ := strings.Cut(user, ":")
	if !regexp.MustCompile(`^[1-9][0-9]*$`).MatchString(uid) {
		t.Errorf("runtime USER %q, want a numeric non-root uid (Kubernetes checks runAsNonRoot against it)", user)
	}
	if len(entry) < 2 || entry[1] != "gateway" {
		t.Errorf("ENTRYPOINT %q, want the binary then gateway", entry)
	}
	if uid != "" && uid != fmt.Sprint(podUser) {
		t.Errorf("runtime USER %s differs from the manifests' runAsUser %d", uid, podUser)
	}
}

func TestParseDockerfile(t *testing.T) {
	tests := []struct {
		name, src string
		want      []instruction
		err       string
	}{
		{"continuation and comments", "# c\nFROM a AS b\nRUN x \\\n  # inner\n  y\n", []instruction{
			{Line: 2, Cmd: "FROM", Args: "a AS b"}, {Line: 3, Cmd: "RUN", Args: "x  y"}}, ""},
		{"flags", "copy --from=build --chown=1:1 /a /b", []instruction{
			{Line: 1, Cmd: "COPY", Flags: []string{"--from=build", "--chown=1:1"}, Args: "/a /b"}}, ""},
		{"dangling continuation", "RUN a \\", nil, "continuation at the end"},
		{"not an instruction", "FROM a\n[x]", nil, "is not an instruction"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseDockerfile(tt.src)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("parseDockerfile(%q) error = %v, want %q", tt.src, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("parseDockerfile(%q) = %v, want %v", tt.src, got, tt.want)
			}
		})
	}
}

func FuzzParseDockerfile(f *testing.F) {
	if src, err := os.ReadFile("Dockerfile"); err == nil {
		f.Add(string(src))
	}
	f.Add("FROM a\nRUN b \\\n c")
	f.Fuzz(func(t *testing.T, src string) {
		ins, err := parseDockerfile(src)
		if err != nil {
			return
		}
		for _, in := range ins {
			if in.Cmd == "" || in.Line < 1 {
				t.Fatalf("instruction %+v from %q", in, src)
			}
		}
		_, _ = stages(ins)
	})
}
