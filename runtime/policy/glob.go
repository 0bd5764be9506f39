package policy

import (
	"strings"
	"unicode/utf8"
)

// isGlob reports whether p holds a wildcard.
func isGlob(p string) bool { return strings.ContainsAny(p, "*?") }

// globMatch reports whether name matches pattern, where '*' matches any run
// of characters (including none) and '?' exactly one character. There is no
// escaping and no character class: server ids and tool names do not use
// '*' or '?'. It does not allocate.
func globMatch(pattern, name string) bool {
	// Iterative matching with one backtrack point: the last '*' seen.
	px, nx := 0, 0
	starPx, starNx := -1, 0
	for px < len(pattern) || nx < len(name) {
		if px < len(pattern) {
			switch c := pattern[px]; c {
			case '*':
				starPx, starNx = px, nx
				px++
				continue
			case '?':
				if nx < len(name) {
					_, size := utf8.DecodeRuneInString(name[nx:])
					px++
					nx += size
					continue
				}
			default:
				if nx < len(name) && name[nx] == c {
					px++
					nx++
					continue
				}
			}
		}
		if starPx >= 0 && starNx < len(name) {
			_, size := utf8.DecodeRuneInString(name[starNx:])
			starNx += size
			px, nx = starPx+1, starNx
			continue
		}
		return false
	}
	return true
}
