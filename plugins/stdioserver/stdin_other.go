//go:build !unix

package stdioserver

import "os"

// pollableStdin keeps os.Stdin where the poller does not serve pipes.
func pollableStdin() *os.File { return nil }
