// Package githubtest is a fake GitHub REST API for tests, like net/http/httptest
// for GitHub: the few endpoints armoriq uses (check runs, commit statuses,
// pull request comments with Link-header pagination, GitHub App installation
// tokens), for repository o/r and pull request 7, recording every request.
//
// It answers as github.com does: a token without a permission gets 403 with
// GitHub's body ("Resource not accessible by integration"), and a request
// over one of GitHub's documented limits gets the 422 GitHub sends, so a
// client that passes against the fake respects the limits.
package githubtest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"unicode/utf8"
)

// GitHub's documented limits, enforced by the fake. GitHub counts
// characters; the fake counts runes, as the strictest reading that a
// UTF-8 client can meet by cutting bytes.
const (
	MaxCommentBody       = 65536 // issue comment body
	MaxCheckRunText      = 65535 // check run output.summary and output.text, each
	MaxAnnotations       = 50    // annotations per create or update request
	MaxAnnotationTitle   = 255
	MaxAnnotationMessage = 64 * 1024 // message and raw_details, each ("64 KB")
	MaxStatusDescription = 140       // a commit status's description is cut by GitHub, not refused
)

// Permissions says what the token may write. The zero value may write
// nothing; Full may write everything a workflow token can be granted.
type Permissions struct {
	Checks       bool // checks: write
	Statuses     bool // statuses: write
	PullRequests bool // pull-requests: write (issue comments on a PR)
}

// Full is a token with every write permission armoriq uses.
var Full = Permissions{Checks: true, Statuses: true, PullRequests: true}

// Server is a running fake. Set its exported fields before the requests
// they affect.
type Server struct {
	*httptest.Server
	mu       sync.Mutex
	requests []Request
	// Comments are the issue comments of pull request 7, in order; the
	// fake serves them two per page.
	Comments []map[string]any
	// Perms is what the token may write; NewServer grants Full. A fork's
	// pull request gets a token that may write nothing.
	Perms Permissions
	// Tokens counts the installation tokens minted.
	Tokens int
}

// Request is one request the fake received, with the status it answered.
type Request struct {
	Method, Path, Query, Auth string
	Body                      map[string]any
	Status                    int
}

// NewServer starts a fake with every permission; Close it when done.
func NewServer() *Server {
	f := &Server{Perms: Full}
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

// Documentation URLs GitHub puts in its error bodies.
const (
	docCheckRun      = "https://docs.github.com/rest/checks/runs#create-a-check-run"
	docUpdateRun     = "https://docs.github.com/rest/checks/runs#update-a-check-run"
	docStatus        = "https://docs.github.com/rest/commits/statuses#create-a-commit-status"
	docComment       = "https://docs.github.com/rest/issues/comments#create-an-issue-comment"
	docUpdateComment = "https://docs.github.com/rest/issues/comments#update-an-issue-comment"
)

type answer struct {
	status int
	body   string
	link   string // the Link header, for a page with a next one
}

// forbidden is GitHub's answer to a token without the permission.
func forbidden(doc string) answer {
	return answer{status: 403, body: fmt.Sprintf(`{"message":"Resource not accessible by integration","documentation_url":%q,"status":"403"}`, doc)}
}

// invalid is GitHub's answer to a request it cannot process.
func invalid(doc, msg string) answer {
	b, _ := json.Marshal(map[string]any{"message": msg, "documentation_url": doc, "status": "422"})
	return answer{status: 422, body: string(b)}
}

// tooLongComment is GitHub's answer to a comment body over the limit.
func tooLongComment(doc string) answer {
	return answer{status: 422, body: fmt.Sprintf(`{"message":"Validation Failed","errors":[{"resource":"IssueComment","code":"unprocessable","field":"data","message":"Body is too long (maximum is %d characters)"}],"documentation_url":%q,"status":"422"}`, MaxCommentBody, doc)}
}

func (f *Server) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var body map[string]any
	data, _ := io.ReadAll(r.Body)
	json.Unmarshal(data, &body)
	a := f.answer(r, body)
	f.requests = append(f.requests, Request{r.Method, r.URL.Path, r.URL.RawQuery, r.Header.Get("Authorization"), body, a.status})
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	if a.link != "" {
		w.Header().Set("Link", a.link)
	}
	w.WriteHeader(a.status)
	io.WriteString(w, a.body)
}

func (f *Server) answer(r *http.Request, body map[string]any) answer {
	path := r.URL.Path
	switch {
	case r.Method == "POST" && path == "/repos/o/r/check-runs":
		if !f.Perms.Checks {
			return forbidden(docCheckRun)
		}
		if a, bad := checkOutput(body, docCheckRun); bad {
			return a
		}
		return answer{status: 201, body: `{"id": 42, "status": "completed"}`}
	case r.Method == "PATCH" && path == "/repos/o/r/check-runs/42":
		if !f.Perms.Checks {
			return forbidden(docUpdateRun)
		}
		if a, bad := checkOutput(body, docUpdateRun); bad {
			return a
		}
		return answer{status: 200, body: `{"id": 42}`}
	case r.Method == "POST" && strings.HasPrefix(path, "/repos/o/r/statuses/"):
		if !f.Perms.Statuses {
			return forbidden(docStatus)
		}
		return answer{status: 201, body: `{"id": 1}`}
	case r.Method == "GET" && path == "/repos/o/r/issues/7/comments":
		return f.listComments(r)
	case r.Method == "POST" && path == "/repos/o/r/issues/7/comments":
		if !f.Perms.PullRequests {
			return forbidden(docComment)
		}
		text, _ := body["body"].(string)
		if utf8.RuneCountInString(text) > MaxCommentBody {
			return tooLongComment(docComment)
		}
		c := map[string]any{"id": float64(100 + len(f.Comments)), "body": text}
		f.Comments = append(f.Comments, c)
		b, _ := json.Marshal(c)
		return answer{status: 201, body: string(b)}
	case r.Method == "PATCH" && strings.HasPrefix(path, "/repos/o/r/issues/comments/"):
		if !f.Perms.PullRequests {
			return forbidden(docUpdateComment)
		}
		text, _ := body["body"].(string)
		if utf8.RuneCountInString(text) > MaxCommentBody {
			return tooLongComment(docUpdateComment)
		}
		var id float64
		fmt.Sscanf(strings.TrimPrefix(path, "/repos/o/r/issues/comments/"), "%g", &id)
		for _, c := range f.Comments {
			if c["id"] == id {
				c["body"] = text
				b, _ := json.Marshal(c)
				return answer{status: 200, body: string(b)}
			}
		}
		return answer{status: 404, body: `{"message":"Not Found","documentation_url":"https://docs.github.com/rest","status":"404"}`}
	case r.Method == "GET" && path == "/repos/o/r/installation":
		return answer{status: 200, body: `{"id": 99}`}
	case r.Method == "POST" && path == "/app/installations/99/access_tokens":
		f.Tokens++
		return answer{status: 201, body: fmt.Sprintf(`{"token": "ghs_inst%d", "expires_at": "2099-01-01T00:00:00Z"}`, f.Tokens)}
	}
	return answer{status: 404, body: `{"message":"Not Found","documentation_url":"https://docs.github.com/rest","status":"404"}`}
}

// listComments serves two comments per page whatever per_page says, with
// Link headers, as a long thread would be paged.
func (f *Server) listComments(r *http.Request) answer {
	page := 1
	fmt.Sscanf(r.URL.Query().Get("page"), "%d", &page)
	page = max(page, 1)
	lo, hi := min((page-1)*2, len(f.Comments)), min(page*2, len(f.Comments))
	b, _ := json.Marshal(f.Comments[lo:hi])
	a := answer{status: 200, body: string(b)}
	if hi < len(f.Comments) {
		a.link = fmt.Sprintf(`<%s/repos/o/r/issues/7/comments?page=%d>; rel="next"`, f.URL, page+1)
	}
	return a
}

// checkOutput refuses a check run's output over GitHub's limits, with the
// message GitHub gives.
func checkOutput(body map[string]any, doc string) (answer, bool) {
	out, ok := body["output"].(map[string]any)
	if !ok {
		return answer{}, false
	}
	for _, k := range []string{"summary", "text"} {
		s, _ := out[k].(string)
		if n := utf8.RuneCountInString(s); n > MaxCheckRunText {
			return invalid(doc, fmt.Sprintf("Invalid request.\n\nOnly %d characters are allowed; %d were supplied.", MaxCheckRunText, n)), true
		}
	}
	if s, _ := out["summary"].(string); s == "" {
		return invalid(doc, "Invalid request.\n\n\"summary\" wasn't supplied."), true
	}
	anns, _ := out["annotations"].([]any)
	if len(anns) > MaxAnnotations {
		return invalid(doc, fmt.Sprintf("Invalid request.\n\nOnly %d annotations are allowed per request.", MaxAnnotations)), true
	}
	for _, a := range anns {
		m, _ := a.(map[string]any)
		p, _ := m["path"].(string)
		if p == "" || strings.HasPrefix(p, "/") || strings.HasPrefix(p, "./") || strings.Contains("/"+p+"/", "/../") {
			// GitHub accepts such a path but attaches the annotation to no
			// file; the fake refuses it so that tests notice.
			return invalid(doc, fmt.Sprintf("Invalid request.\n\nannotation path %q is not a clean repository-relative path.", p)), true
		}
		for _, k := range []string{"start_line", "end_line", "annotation_level", "message"} {
			if _, ok := m[k]; !ok {
				return invalid(doc, fmt.Sprintf("Invalid request.\n\n%q wasn't supplied.", k)), true
			}
		}
		if t, _ := m["title"].(string); utf8.RuneCountInString(t) > MaxAnnotationTitle {
			return invalid(doc, fmt.Sprintf("Invalid request.\n\nannotation title is too long (maximum is %d characters).", MaxAnnotationTitle)), true
		}
		for _, k := range []string{"message", "raw_details"} {
			if s, _ := m[k].(string); len(s) > MaxAnnotationMessage {
				return invalid(doc, fmt.Sprintf("Invalid request.\n\nannotation %s is too long (maximum is 64 KB).", k)), true
			}
		}
	}
	return answer{}, false
}
