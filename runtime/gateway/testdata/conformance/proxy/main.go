// Command proxy is the conformance harness's header-injecting reverse
// proxy: the MCP conformance suite cannot send an Authorization header, so
// the proxy adds the gateway API key to every request. It keeps the
// client's Host and Origin headers, so the suite's DNS-rebinding scenario
// still tests the gateway, and flushes at once, so SSE streams pass
// through unbuffered.
//
//	proxy -listen 127.0.0.1:0 -target http://127.0.0.1:8080 -key-file admin.key -addr-file proxy.addr
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"strings"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	target := flag.String("target", "", "gateway base URL")
	keyFile := flag.String("key-file", "", "file holding the API key to send as Authorization: Bearer")
	addrFile := flag.String("addr-file", "", "write the listening address here once ready")
	flag.Parse()
	u, err := url.Parse(*target)
	if err != nil || u.Host == "" {
		log.Fatalf("proxy: -target %q is not a URL", *target)
	}
	key, err := os.ReadFile(*keyFile)
	if err != nil {
		log.Fatalf("proxy: %v", err)
	}
	auth := "Bearer " + strings.TrimSpace(string(key))
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.Out.URL.Scheme, r.Out.URL.Host = u.Scheme, u.Host
			r.Out.Host = r.In.Host // keep the client's Host
			r.Out.Header.Set("Authorization", auth)
		},
		FlushInterval: -1,
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatalf("proxy: %v", err)
	}
	if *addrFile != "" {
		if err := os.WriteFile(*addrFile, []byte(ln.Addr().String()), 0o600); err != nil {
			log.Fatalf("proxy: %v", err)
		}
	}
	fmt.Fprintf(os.Stderr, "proxy: %s -> %s\n", ln.Addr(), u)
	// Each request is served in full-duplex mode. By default Go's HTTP/1
	// server drains and closes what is left of a request body when the
	// handler starts its response, while the transport may still be reading
	// that body (after its last byte it reads once more, for the end, and
	// closes it). When the gateway answered that fast, the transport's read
	// failed ("http: invalid Read on closed Body"), it closed its connection
	// to the gateway, and the proxy cut the event stream after its headers
	// ("ReverseProxy read error during body copy", golang/go#40747): the
	// suite found no result, or waited on a response that never ended until
	// its scenario timed out. In full duplex the body is left to the
	// transport.
	log.Fatal(http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := http.NewResponseController(w).EnableFullDuplex(); err != nil {
			http.Error(w, "proxy: full duplex: "+err.Error(), http.StatusInternalServerError)
			return
		}
		rp.ServeHTTP(w, r)
	})))
}
