package intent

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// MaxSteps bounds the number of steps ParsePlan accepts.
const MaxSteps = 1000

// Keys the SDKs inject into a call's params; they are not part of the plan.
const (
	keyIAMContext = "_iam_context"
	keyUserEmail  = "user_email"
)

// ErrInvalidPlan is matched (errors.Is) by every *PlanError.
var ErrInvalidPlan = errors.New("invalid plan")

// PlanError lists every problem ParsePlan found, each prefixed with its place
// in the plan ("steps[2]: action is required").
type PlanError struct {
	Problems []string
}

func (e *PlanError) Error() string {
	return "invalid plan: " + strings.Join(e.Problems, "; ")
}

// Is makes errors.Is(err, ErrInvalidPlan) true.
func (e *PlanError) Is(target error) bool { return target == ErrInvalidPlan }

// Step is one planned tool call.
type Step struct {
	Action      string         `json:"action"`
	MCP         string         `json:"mcp"`
	Params      map[string]any `json:"params,omitempty"`
	Description string         `json:"description,omitempty"`
}

// Plan is an agent's plan: a goal and the tool calls it will make, in order.
// Raw is the plan object exactly as received (decoded with UseNumber, unknown
// keys included); the plan hash is computed over it, so a key the agent added
// is signed too. Treat Raw and the Params maps, which share its values, as
// read-only.
type Plan struct {
	Goal  string         `json:"goal,omitempty"`
	Steps []Step         `json:"steps"`
	Raw   map[string]any `json:"-"`
}

// ParsePlan decodes and checks a plan object: {"goal"?, "steps": [{"action",
// "mcp", "params"?, "description"?}, ...]}. It reports every problem at once
// in a *PlanError: steps missing, empty or not a list, a step that is not an
// object, without a string action or mcp, with params that are not an object.
// Unknown keys are kept (and hashed), not refused.
func ParsePlan(raw json.RawMessage) (*Plan, error) {
	v, err := decodeJSON(raw)
	if err != nil {
		return nil, &PlanError{Problems: []string{"not valid JSON: " + err.Error()}}
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, &PlanError{Problems: []string{"plan must be a JSON object"}}
	}
	return PlanFromObject(obj)
}

// PlanFromObject checks an already decoded plan object (see ParsePlan) and
// keeps it as the plan's Raw form. Decode it with UseNumber: float64 numbers
// would hash differently from what the SDK signed.
func PlanFromObject(obj map[string]any) (*Plan, error) {
	var problems []string
	p := &Plan{Raw: obj}
	switch g := obj["goal"].(type) {
	case nil:
	case string:
		p.Goal = g
	default:
		problems = append(problems, "goal must be a string")
	}
	rawSteps, present := obj["steps"]
	steps, isList := rawSteps.([]any)
	switch {
	case !present || rawSteps == nil:
		problems = append(problems, "steps is required")
	case !isList:
		problems = append(problems, "steps must be a list")
	case len(steps) == 0:
		problems = append(problems, "steps must not be empty")
	case len(steps) > MaxSteps:
		problems = append(problems, fmt.Sprintf("steps has %d entries, more than %d", len(steps), MaxSteps))
	}
	if _, err := Canonical(obj); err != nil {
		problems = append(problems, err.Error())
	}
	if len(steps) > MaxSteps {
		steps = nil
	}
	for i, rs := range steps {
		s, ok := rs.(map[string]any)
		if !ok {
			problems = append(problems, fmt.Sprintf("steps[%d]: must be an object", i))
			continue
		}
		var st Step
		if a, ok := s["action"].(string); !ok || a == "" {
			problems = append(problems, fmt.Sprintf("steps[%d]: action is required (a non-empty string)", i))
		} else {
			st.Action = a
		}
		if m, ok := s["mcp"].(string); !ok || m == "" {
			problems = append(problems, fmt.Sprintf("steps[%d]: mcp is required (a non-empty string)", i))
		} else {
			st.MCP = m
		}
		switch params := s["params"].(type) {
		case nil:
		case map[string]any:
			st.Params = params
		default:
			problems = append(problems, fmt.Sprintf("steps[%d]: params must be an object", i))
		}
		switch d := s["description"].(type) {
		case nil:
		case string:
			st.Description = d
		default:
			problems = append(problems, fmt.Sprintf("steps[%d]: description must be a string", i))
		}
		p.Steps = append(p.Steps, st)
	}
	if len(problems) > 0 {
		return nil, &PlanError{Problems: problems}
	}
	return p, nil
}

// Object returns the plan as a JSON object: Raw when the plan was parsed, else
// one built from Goal and Steps ({"goal"?, "steps": [{"action", "mcp",
// "params"?, "description"?}]}, empty goal, nil params and empty description
// left out). It is what the plan hash covers and what a client sends.
func (p *Plan) Object() map[string]any {
	if p.Raw != nil {
		return p.Raw
	}
	steps := make([]any, len(p.Steps))
	for i, s := range p.Steps {
		m := map[string]any{"action": s.Action, "mcp": s.MCP}
		if s.Params != nil {
			m["params"] = s.Params
		}
		if s.Description != "" {
			m["description"] = s.Description
		}
		steps[i] = m
	}
	obj := map[string]any{"steps": steps}
	if p.Goal != "" {
		obj["goal"] = p.Goal
	}
	return obj
}

// MarshalJSON writes Object() in canonical form.
func (p *Plan) MarshalJSON() ([]byte, error) { return Canonical(p.Object()) }

// HashPlan returns the lowercase hex SHA-256 of Canonical(p.Object()): the
// whole plan as received, goal, every step with its params, and any other key.
func HashPlan(p *Plan) (string, error) {
	c, err := Canonical(p.Object())
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(c)
	return hex.EncodeToString(sum[:]), nil
}

// PlanHash is HashPlan for a plan known to be canonicalizable (every plan
// ParsePlan returns is); it returns "" for one that is not.
func PlanHash(p *Plan) string {
	h, err := HashPlan(p)
	if err != nil {
		return ""
	}
	return h
}

// StripInjected returns params without the top-level keys the SDKs inject into
// a call (_iam_context and user_email). The input is not modified; a nil map
// stays nil.
func StripInjected(params map[string]any) map[string]any {
	if params == nil {
		return nil
	}
	_, a := params[keyIAMContext]
	_, b := params[keyUserEmail]
	if !a && !b {
		return params
	}
	out := make(map[string]any, len(params))
	for k, v := range params {
		if k != keyIAMContext && k != keyUserEmail {
			out[k] = v
		}
	}
	return out
}

// StepLeafInput returns the canonical bytes a step's leaf hashes:
// Canonical({"action": s.Action, "mcp": s.MCP, "params": StripInjected(s.Params)}),
// with nil params written as {}.
//
// It writes that object's three members itself, in their sorted order, as
// Canonical writes a map: the gateway computes a leaf on every call, and
// the map and its sorted keys were a third of the cost.
func StepLeafInput(s Step) ([]byte, error) {
	params := StripInjected(s.Params)
	if params == nil {
		params = map[string]any{}
	}
	n := len(s.Action) + len(s.MCP) + canonicalSize(params, 1) + 32
	b := append(make([]byte, 0, n+n/16+64), `{"action":`...)
	b, err := appendPyString(b, s.Action)
	if err != nil {
		return nil, err
	}
	b = append(b, `,"mcp":`...)
	if b, err = appendPyString(b, s.MCP); err != nil {
		return nil, err
	}
	b = append(b, `,"params":`...)
	if b, err = appendCanonical(b, params, 1); err != nil {
		return nil, err
	}
	return append(b, '}'), nil
}

// StepLeaf returns SHA-256(0x00 || StepLeafInput(s)), the Merkle leaf of a
// step. For a step whose params cannot be canonicalized (never one from
// ParsePlan) it returns the zero hash, which no tree built by this package
// contains as a leaf of a valid plan.
func StepLeaf(s Step) [32]byte {
	in, err := StepLeafInput(s)
	if err != nil {
		return [32]byte{}
	}
	return HashLeaf(in)
}

// PlanLeaves returns StepLeaf of every step, in order.
func PlanLeaves(p *Plan) [][32]byte {
	leaves := make([][32]byte, len(p.Steps))
	for i, s := range p.Steps {
		leaves[i] = StepLeaf(s)
	}
	return leaves
}

// StepIndex returns the index of the first step whose action is action, the
// step the SDKs name in X-CSRG-Path, or -1.
func StepIndex(steps []Step, action string) int {
	for i, s := range steps {
		if s.Action == action {
			return i
		}
	}
	return -1
}
