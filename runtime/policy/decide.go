package policy

import (
	"strings"
	"time"
)

// Decide decides req: the strongest effect among the rules that match it
// (deny over hold over allow), or deny when none does. Among rules of the
// same effect the first in policy order names the decision. It is safe for
// concurrent use; it does not allocate unless a when condition needs HCL
// (see docs/policy.md for the shapes evaluated natively) or no rule matches.
func (e *Engine) Decide(req *Request) Decision {
	s := search{e: e, req: req, mode: evalWhen}
	s.run()
	return s.decision()
}

// Static decides req without evaluating when conditions: rules that have
// one are left out. conditional is the decision of the strongest such rule
// that applies to the request (user, agent and tool match) and would change
// the decision if its condition held, or, for a hold over a hold, if it
// failed (a failed hold denies); its Effect is "" if there is none.
// `armoriq diff` reports those pairs as conditional.
func (e *Engine) Static(req *Request) (d, conditional Decision) {
	s := search{e: e, req: req, mode: skipWhen}
	s.run()
	d = s.decision()
	if r := s.changingCond(); r != nil {
		conditional = Decision{Effect: effectOfRank[r.rank], RuleID: r.id, Pos: r.pos, Reason: r.reason + " if its when condition holds"}
		if r.rank == rankHold {
			conditional.Approvers = r.approvers
		}
	}
	return d, conditional
}

// changingCond is, after a skipWhen search, the conditional rule that would
// change the outcome if its condition held, or nil. It changes the outcome
// only when it outranks the static decision with a different effect: a
// conditional deny over the default deny changes nothing.
func (s *search) changingCond() *rule {
	r := s.condRule
	if r == nil {
		return nil
	}
	if r.rank == rankHold && s.bestRank == rankHold {
		// Over a hold, a conditional hold changes nothing if its
		// condition holds, but denies if it fails (fail closed).
		return r
	}
	if r.rank <= s.bestRank || r.rank == rankDeny && s.best == nil {
		return nil
	}
	return r
}

// Visible reports whether the tool req names should be listed to the
// caller (tools/list): it is allowed or held, or a conditional allow or
// hold rule could let it through with the right arguments. req.Args is
// ignored. It does not allocate.
func (e *Engine) Visible(req *Request) bool {
	s := search{e: e, req: req, mode: skipWhen}
	s.run()
	return s.best != nil && s.bestRank != rankDeny || s.changingCond() != nil
}

type mode int8

const (
	evalWhen mode = iota // evaluate conditions
	skipWhen             // leave conditional rules out, note the strongest
)

// search is the state of one decision.
type search struct {
	e      *Engine
	req    *Request
	mode   mode
	user   string // lower case
	domain string // lower case, "" without '@'

	best     *rule
	bestRank rank
	bestErr  error  // the best rule is a deny whose condition failed
	failNote string // the first allow or hold whose condition failed

	condRule *rule // skipWhen: the strongest applicable conditional rule, first in order
	scope    *scope
	t        time.Time // see now
}

func (s *search) run() {
	req := s.req
	s.user = NormalizeEmail(req.User)
	if i := strings.LastIndexByte(s.user, '@'); i >= 0 {
		s.domain = s.user[i+1:]
	}
	if si := s.e.servers[req.Server]; si != nil {
		s.scan(si.exact[req.Tool], false, false)
		s.scanGlobs(&si.globs, req.Tool, false)
	}
	s.scanGlobs(&s.e.residual, req.Server, true)
}

func (s *search) scanGlobs(g *globIndex, key string, checkServer bool) {
	if len(key) > 0 && g.byFirst != nil {
		s.scan(g.byFirst[key[0]], true, checkServer)
	}
	s.scan(g.wild, true, checkServer)
}

// scan visits one index list, sorted strongest effect first then in rule
// order, and stops at the first rule that matches or at the first that
// could not beat the best so far. A deny or hold rule whose condition
// cannot be evaluated fails closed: it decides deny (see fail). Because of
// that, once a hold has matched, the later conditional holds are still
// evaluated: they cannot name the decision, but one that fails turns it
// into a deny.
func (s *search) scan(list []entry, checkTool, checkServer bool) {
	for i := range list {
		en := &list[i]
		r := en.r
		if r.rank < s.bestRank {
			return
		}
		failOnly := false // r cannot name the decision, only fail closed
		if s.best != nil && r.rank == s.bestRank && r.index > s.best.index {
			if r.rank != rankHold || r.when == nil {
				continue
			}
			failOnly = true // or, without evaluation, noted as conditional
		}
		if checkServer && !globMatch(en.server, s.req.Server) {
			continue
		}
		if checkTool {
			if en.literal {
				if en.tool != s.req.Tool {
					continue
				}
			} else if !globMatch(en.tool, s.req.Tool) {
				continue
			}
		}
		if !s.subjectMatches(r) || !agentMatches(r, s.req.Agent) {
			continue
		}
		if r.when != nil {
			if s.mode == skipWhen {
				if c := s.condRule; c == nil || r.rank > c.rank || r.rank == c.rank && r.index < c.index {
					s.condRule = r
				}
				continue
			}
			ok, err := s.eval(r)
			if err != nil {
				if r.rank >= rankHold {
					s.fail(r, err)
					return
				}
				if s.failNote == "" {
					s.failNote = r.label + ": when condition failed: " + err.Error()
				}
				continue
			}
			if !ok || failOnly {
				continue
			}
		}
		s.take(r, nil)
		if r.rank != rankHold {
			return
		}
	}
}

func (s *search) take(r *rule, err error) {
	s.best, s.bestRank, s.bestErr = r, r.rank, err
}

// fail makes r, a deny or hold rule whose condition could not be
// evaluated, decide deny (fail closed). A deny rule earlier in policy
// order may still name the decision instead.
func (s *search) fail(r *rule, err error) {
	if s.bestRank == rankDeny && s.best.index < r.index {
		return
	}
	s.best, s.bestRank, s.bestErr = r, rankDeny, err
}

func (s *search) decision() Decision {
	if s.best == nil {
		user := s.req.User
		if user == "" {
			user = "an anonymous user"
		}
		reason := "no rule allows " + s.req.Server + "/" + s.req.Tool + " for " + user
		if s.failNote != "" {
			reason += "; " + s.failNote
		}
		return Decision{Effect: Deny, Reason: reason}
	}
	d := Decision{Effect: effectOfRank[s.bestRank], RuleID: s.best.id, Pos: s.best.pos, Reason: s.best.reason}
	if s.bestRank == rankHold {
		d.Approvers = s.best.approvers
	}
	if s.bestErr != nil {
		d.WhenError = s.bestErr.Error()
		d.Reason = s.best.label + ": when condition failed: " + d.WhenError + "; denied (fail closed)"
	}
	return d
}

func (s *search) subjectMatches(r *rule) bool {
	if r.anyone {
		return true
	}
	if s.req.AnyUser {
		return r.rank == rankAllow
	}
	if s.user != "" {
		if _, ok := r.users[s.user]; ok {
			return true
		}
		if s.domain != "" {
			for _, d := range r.domains {
				if d == s.domain {
					return true
				}
			}
		}
	}
	for _, g := range r.groups {
		if s.inGroup(g) {
			return true
		}
	}
	return false
}

func (s *search) inGroup(g groupRef) bool {
	for _, name := range s.req.Groups {
		if name == g.name {
			return true
		}
	}
	return g.def != nil && s.inDef(g.def)
}

func (s *search) inDef(g *group) bool {
	if g.anyone {
		return true
	}
	if s.user == "" {
		return false
	}
	if _, ok := g.users[s.user]; ok {
		return true
	}
	if s.domain != "" {
		for _, d := range g.domains {
			if d == s.domain {
				return true
			}
		}
	}
	return false
}

func agentMatches(r *rule, agent string) bool {
	if len(r.agents) == 0 {
		return true
	}
	for _, a := range r.agents {
		if a == agent {
			return true
		}
	}
	return false
}
