package bundle

import "fmt"

// Reason says why a bundle was refused.
type Reason string

// Reasons a bundle can be refused, in the order Verify checks them.
const (
	// Malformed: not a bundle this package can parse (bad gzip or tar,
	// oversized, path traversal, duplicate or non-regular entries, bad JSON).
	Malformed Reason = "malformed"
	// UnsupportedFormat: a format version or signature algorithm this build
	// does not know.
	UnsupportedFormat Reason = "unsupported format"
	// Unsigned: there is no .signatures.json, or it holds no signature.
	Unsigned Reason = "unsigned"
	// UnknownKey: signed, but by no key the verifier pins.
	UnknownKey Reason = "unknown key"
	// BadSignature: the signature does not verify under the pinned key.
	BadSignature Reason = "bad signature"
	// FileAdded: the archive holds a file the signature does not list.
	FileAdded Reason = "file added"
	// FileRemoved: the signature lists a file the archive lacks.
	FileRemoved Reason = "file removed"
	// FileChanged: a file's SHA-256 differs from the signed one.
	FileChanged Reason = "file changed"
)

// VerifyError is the one error type Read and Verify return for a bad bundle.
// Detail names the file or key at fault.
type VerifyError struct {
	Reason Reason
	Detail string
}

func (e *VerifyError) Error() string {
	if e.Detail == "" {
		return "bundle " + string(e.Reason)
	}
	return string(e.Reason) + ": " + e.Detail
}

// Is reports whether target is a *VerifyError with the same Reason, so
// callers can write errors.Is(err, &bundle.VerifyError{Reason: bundle.BadSignature}).
func (e *VerifyError) Is(target error) bool {
	t, ok := target.(*VerifyError)
	return ok && t.Reason == e.Reason
}

func verifyErrorf(r Reason, format string, args ...any) *VerifyError {
	return &VerifyError{Reason: r, Detail: fmt.Sprintf(format, args...)}
}

func malformedf(format string, args ...any) *VerifyError {
	return verifyErrorf(Malformed, format, args...)
}
