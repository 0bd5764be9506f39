package reconciler

import (
	"fmt"
	"path/filepath"
	"strings"
)

// GitHub's documented limits on the texts armoriq sends it. GitHub counts
// characters; armoriq counts UTF-8 bytes, which are never fewer than
// characters however they are counted (code points or UTF-16 units), so a
// text cut to N bytes fits GitHub's N characters.
const (
	MaxCommentBody       = 65536   // an issue or pull request comment
	MaxCheckRunText      = 65535   // a check run's output.summary and output.text, each
	MaxAnnotationTitle   = 255     // an annotation's title
	MaxAnnotationMessage = 64000   // an annotation's message and raw_details, each ("64 KB"; read as 64,000)
	MaxStatusDescription = 140     // a commit status's description
	MaxStepSummary       = 1 << 20 // a step's job summary ($GITHUB_STEP_SUMMARY): 1 MiB
)

// fitMarkdown returns md unchanged when it fits in limit bytes; else md cut
// at the last whole line that leaves room for a note saying how much was
// left out and where to see it all (where, e.g. "the job summary of this
// run"). A code fence left open by the cut is closed. The result is at most
// limit bytes.
func fitMarkdown(md string, limit int, where string) string {
	if len(md) <= limit {
		return md
	}
	note := func(lines, bytes int) string {
		return fmt.Sprintf("\n\n---\n**Cut to fit GitHub's limit of %d characters:** %s (%s) left out. %s\n",
			limit, plural(lines, "line"), plural(bytes, "byte"), seeAll(where))
	}
	const fence = "```\n"
	room := limit - len(note(strings.Count(md, "\n")+1, len(md))) - len(fence)
	if room < 0 {
		return cutBytes(md, limit, "")
	}
	kept := cutBytes(md, room, "")
	if i := strings.LastIndexByte(kept, '\n'); i > 0 {
		kept = kept[:i+1]
	}
	rest := md[len(kept):]
	out := kept
	if strings.Count("\n"+kept, "\n```")%2 == 1 {
		if !strings.HasSuffix(out, "\n") {
			out += "\n"
		}
		out += fence
	}
	return out + note(strings.Count(rest, "\n")+1, len(rest))
}

// fitPlain returns s cut to limit bytes with a short note of what was cut,
// for an annotation's message or details.
func fitPlain(s string, limit int, where string) string {
	if len(s) <= limit {
		return s
	}
	note := func(bytes int) string {
		return fmt.Sprintf("\n… %s cut (GitHub's limit is %d). %s", plural(bytes, "byte"), limit, seeAll(where))
	}
	room := limit - len(note(len(s)))
	if room < 0 {
		return cutBytes(s, limit, "")
	}
	kept := cutBytes(s, room, "")
	return kept + note(len(s)-len(kept))
}

func seeAll(where string) string {
	if where == "" {
		return "Run `armoriq check` for the full report."
	}
	return "The full report is in " + where + ", and `armoriq check` prints it locally."
}

// cutBytes cuts s to at most n bytes on a rune boundary and adds mark when
// it cut (mark counts towards n).
func cutBytes(s string, n int, mark string) string {
	if len(s) <= n {
		return s
	}
	cut := max(n-len(mark), 0)
	for cut > 0 && !utf8RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + mark
}

// RepoPath turns file (absolute, or relative to the working directory) into
// the clean repository-relative, slash-separated path GitHub attaches
// annotations to: "./armoriq.yaml" is "armoriq.yaml", and an absolute path
// is made relative to root (the repository's root, GITHUB_WORKSPACE in a
// workflow). It reports false for a path outside root, which no annotation
// can point at.
func RepoPath(root, file string) (string, bool) {
	if file == "" {
		return "", false
	}
	abs, err := filepath.Abs(file)
	if err != nil {
		return "", false
	}
	if root == "" {
		if root, err = filepath.Abs("."); err != nil {
			return "", false
		}
	}
	root, err = filepath.Abs(root)
	if err != nil {
		return "", false
	}
	if rel, ok := inside(root, abs); ok {
		return rel, true
	}
	// The same directory may be reached through a symbolic link (a
	// workspace under /tmp on macOS is /private/tmp).
	rroot, err1 := filepath.EvalSymlinks(root)
	rabs, err2 := filepath.EvalSymlinks(abs)
	if err1 != nil || err2 != nil {
		return "", false
	}
	return inside(rroot, rabs)
}

func inside(root, abs string) (string, bool) {
	rel, err := filepath.Rel(root, abs)
	if err != nil || rel == "." || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) || filepath.IsAbs(rel) {
		return "", false
	}
	return filepath.ToSlash(rel), true
}
