//go:build !unix

package httpfront

// peekClosed cannot look here: a client that went away is noticed when
// its answer is written.
func peekClosed(fd uintptr) bool { return false }
