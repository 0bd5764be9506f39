// Package githubtest is a fake GitHub REST API for tests, like net/http/httptest
// for GitHub: the few endpoints armoriq uses (check runs, commit statuses,
// pull request comments with Link-header pagination, GitHub App installation
// tokens), for repository o/r and pull request 7, recording every request.
package githubtest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
)

// Server is a running fake. Set its exported fields before the requests
// they affect.
type Server struct {
	*httptest.Server
	mu       sync.Mutex
	requests []Request
	// Comments are the issue comments of pull request 7, in order; the
	// fake serves them two per page.
	Comments []map[string]any
	// ChecksForbidden makes check-run creation answer 403, as for a plain
	// token without the checks permission.
	ChecksForbidden bool
	// ReadOnly makes comment creation answer 403, as for a fork's PR.
	ReadOnly bool
	// Tokens counts the installation tokens minted.
	Tokens int
}

// Request is one request the fake received.
type Request struct {
	Method, Path, Query, Auth string
	Body                      map[string]any
}

// NewServer starts a fake; Close it when done.
func NewServer() *Server {
	f := &Server{}
	f.Server = httptest.NewServer(http.HandlerFunc(f.serve))
	return f
}

// Take returns the requests received since the last Take.
func (f *Server) Take() []Request {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := f.requests
	f.requests = nil
	return r
}

func (f *Server) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var body map[string]any
	data, _ := io.ReadAll(r.Body)
	json.Unmarshal(data, &body)
	f.requests = append(f.requests, Request{r.Method, r.URL.Path, r.URL.RawQuery, r.Header.Get("Authorization"), body})
	w.Header().Set("Content-Type", "application/json")
	switch {
	case r.Method == "POST" && r.URL.Path == "/repos/o/r/check-runs":
		if f.ChecksForbidden {
			w.WriteHeader(403)
			fmt.Fprint(w, `{"message":"Resource not accessible by integration"}`)
			return
		}
		w.WriteHeader(201)
		fmt.Fprint(w, `{"id": 42, "status": "completed"}`)
	case r.Method == "PATCH" && r.URL.Path == "/repos/o/r/check-runs/42":
		fmt.Fprint(w, `{"id": 42}`)
	case r.Method == "POST" && strings.HasPrefix(r.URL.Path, "/repos/o/r/statuses/"):
		w.WriteHeader(201)
		fmt.Fprint(w, `{"id": 1}`)
	case r.Method == "GET" && r.URL.Path == "/repos/o/r/issues/7/comments":
		// Two comments per page whatever per_page says, with Link headers.
		page := 1
		fmt.Sscanf(r.URL.Query().Get("page"), "%d", &page)
		lo, hi := (page-1)*2, min(page*2, len(f.Comments))
		if hi < len(f.Comments) {
			w.Header().Set("Link", fmt.Sprintf(`<%s/repos/o/r/issues/7/comments?page=%d>; rel="next"`, f.URL, page+1))
		}
		json.NewEncoder(w).Encode(f.Comments[min(lo, hi):hi])
	case r.Method == "POST" && r.URL.Path == "/repos/o/r/issues/7/comments" && f.ReadOnly:
		w.WriteHeader(403)
		fmt.Fprint(w, `{"message":"Resource not accessible by integration"}`)
	case r.Method == "POST" && r.URL.Path == "/repos/o/r/issues/7/comments":
		c := map[string]any{"id": float64(100 + len(f.Comments)), "body": body["body"]}
		f.Comments = append(f.Comments, c)
		w.WriteHeader(201)
		json.NewEncoder(w).Encode(c)
	case r.Method == "PATCH" && strings.HasPrefix(r.URL.Path, "/repos/o/r/issues/comments/"):
		var id float64
		fmt.Sscanf(strings.TrimPrefix(r.URL.Path, "/repos/o/r/issues/comments/"), "%g", &id)
		for _, c := range f.Comments {
			if c["id"] == id {
				c["body"] = body["body"]
			}
		}
		json.NewEncoder(w).Encode(map[string]any{"id": id})
	case r.Method == "GET" && r.URL.Path == "/repos/o/r/installation":
		fmt.Fprint(w, `{"id": 99}`)
	case r.Method == "POST" && r.URL.Path == "/app/installations/99/access_tokens":
		f.Tokens++
		w.WriteHeader(201)
		fmt.Fprintf(w, `{"token": "ghs_inst%d", "expires_at": "2099-01-01T00:00:00Z"}`, f.Tokens)
	default:
		w.WriteHeader(404)
		fmt.Fprint(w, `{"message":"Not Found"}`)
	}
}
