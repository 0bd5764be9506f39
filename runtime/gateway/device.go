package gateway

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode"

	"github.com/armoriq/controlplane/runtime/identity"
	"github.com/armoriq/controlplane/runtime/store"
)

// The device login (RFC 8628) behind `armoriq login`: a device asks for a
// code pair, a person signed in to the console approves the short user
// code and picks a role, and the device's next poll receives a new API key
// of that role. The device code is a bearer secret: only its hash is
// stored, and the key is made at the poll that hands it out, so no secret
// ever rests in the store.

// maxPendingDevices bounds the unauthenticated POST /auth/device/code: past
// it, new logins wait until pending ones are decided or expire.
const maxPendingDevices = 50

// userCodeAlphabet has no vowels (no words) and no look-alike characters.
const userCodeAlphabet = "BCDFGHJKLMNPQRSTVWXZ"

func newUserCode() string {
	var b [8]byte
	out := make([]byte, 0, 9)
	for len(out) < 9 {
		rand.Read(b[:])
		for _, c := range b {
			if c >= 240 { // 240 = 12 × 20: no modulo bias
				continue
			}
			if len(out) == 4 {
				out = append(out, '-')
			}
			if len(out) < 9 {
				out = append(out, userCodeAlphabet[int(c)%len(userCodeAlphabet)])
			}
		}
	}
	return string(out)
}

// NormalizeUserCode puts a user code as a person typed it into its stored
// form (upper case, XXXX-XXXX); ok is false if it cannot be one.
func NormalizeUserCode(s string) (string, bool) {
	var b strings.Builder
	for _, r := range strings.ToUpper(s) {
		switch {
		case r == '-' || unicode.IsSpace(r):
		case r < 128 && strings.IndexByte(userCodeAlphabet, byte(r)) >= 0:
			b.WriteRune(r)
		default:
			return "", false
		}
	}
	c := b.String()
	if len(c) != 8 {
		return "", false
	}
	return c[:4] + "-" + c[4:], true
}

func deviceCodeHash(code string) []byte {
	sum := sha256.Sum256([]byte("armoriq device code v1\x00" + code))
	return sum[:]
}

// cleanLabel makes a client-supplied label safe to store and show: printable,
// one line, bounded.
func cleanLabel(s string, max int) string {
	s = strings.Map(func(r rune) rune {
		// Controls, and format characters that reorder or hide what the
		// approver reads (a bidi override makes "nigol.exe" read "exe.login").
		if unicode.IsControl(r) || r == unicode.ReplacementChar || unicode.In(r, unicode.Cf, unicode.Co) {
			return ' '
		}
		return r
	}, s)
	s = strings.Join(strings.Fields(scrubText(s)), " ")
	if len(s) > max {
		s = strings.ToValidUTF8(s[:max], "")
	}
	return s
}

// DeviceStart is the answer to POST /auth/device/code.
type DeviceStart struct {
	DeviceCode              string `json:"deviceCode"`
	UserCode                string `json:"userCode"`
	VerificationURI         string `json:"verificationUri"`
	VerificationURIComplete string `json:"verificationUriComplete"`
	ExpiresIn               int    `json:"expiresIn"`
	Interval                int    `json:"interval"`
	// The RFC 8628 names of the same fields.
	DeviceCodeRFC              string `json:"device_code"`
	UserCodeRFC                string `json:"user_code"`
	VerificationURIRFC         string `json:"verification_uri"`
	VerificationURICompleteRFC string `json:"verification_uri_complete"`
	ExpiresInRFC               int    `json:"expires_in"`
}

// startDevice creates a pending device login.
func (s *Server) startDevice(ctx context.Context, base, client string) (DeviceStart, error) {
	now := s.now().UTC()
	n, err := s.store.CountPendingDeviceLogins(ctx, now)
	if err != nil {
		return DeviceStart{}, &Error{Kind: KindUnavailable, Message: "cannot start a device login: store unavailable", Err: err}
	}
	if n >= maxPendingDevices {
		return DeviceStart{}, errorf(KindUnavailable, "too many device logins are waiting for approval; try again in a few minutes")
	}
	var raw [32]byte
	rand.Read(raw[:])
	code := "dc_" + base64.RawURLEncoding.EncodeToString(raw[:])
	ttl := s.human.cfg.DeviceTTL
	var user string
	for range 5 {
		user = newUserCode()
		err = s.store.CreateDeviceLogin(ctx, store.DeviceLogin{
			CodeHash: deviceCodeHash(code), UserCode: user, Client: cleanLabel(client, 120),
			CreatedAt: now, ExpiresAt: now.Add(ttl),
		})
		if !errors.Is(err, store.ErrConflict) {
			break
		}
	}
	if err != nil {
		return DeviceStart{}, internal(err, "starting a device login")
	}
	if s.human.cfg.PublicURL != "" {
		base = s.human.cfg.PublicURL
	}
	base += "/console/device"
	full := base + "?code=" + url.QueryEscape(user)
	secs := int(ttl.Seconds())
	return DeviceStart{
		DeviceCode: code, UserCode: user, VerificationURI: base, VerificationURIComplete: full,
		ExpiresIn: secs, Interval: int(s.human.cfg.DeviceInterval.Seconds()),
		DeviceCodeRFC: code, UserCodeRFC: user, VerificationURIRFC: base, VerificationURICompleteRFC: full, ExpiresInRFC: secs,
	}, nil
}

func (s *Server) handleDeviceCode(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		Client string `json:"client"`
	}
	if r.ContentLength != 0 {
		if err := decodeJSON(r, &req); err != nil {
			return err
		}
	}
	if req.Client == "" {
		req.Client = r.UserAgent()
	}
	st, err := s.startDevice(r.Context(), s.baseURL(r), req.Client)
	if err != nil {
		return err
	}
	s.log.Info("device login started", "user_code", st.UserCode)
	writeJSON(w, http.StatusOK, st)
	return nil
}

// DeviceGrant is what a device receives once its login was approved.
type DeviceGrant struct {
	APIKey string     `json:"apiKey"`
	KeyID  string     `json:"keyId"`
	Role   store.Role `json:"role"`
	Email  string     `json:"email"`
	UserID string     `json:"userId"`
	OrgID  string     `json:"orgId"`
}

// devicePollError is one of RFC 8628's answers to a poll that gets no key.
type devicePollError struct {
	Code    string // authorization_pending, slow_down, expired_token, access_denied, invalid_grant
	Message string
}

func (e *devicePollError) Error() string { return e.Code + ": " + e.Message }

// pollDevice answers one poll of a device code: the grant once approved
// (made and handed out exactly once), else a *devicePollError.
func (s *Server) pollDevice(ctx context.Context, code string, keyName string) (DeviceGrant, error) {
	now := s.now().UTC()
	if code == "" || len(code) > 200 {
		return DeviceGrant{}, &devicePollError{"invalid_grant", "deviceCode is missing or malformed"}
	}
	hash := deviceCodeHash(code)
	d, err := s.store.TouchDeviceLogin(ctx, hash, now)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return DeviceGrant{}, &devicePollError{"invalid_grant", "unknown device code: start again with POST /auth/device/code"}
	case err != nil:
		return DeviceGrant{}, &Error{Kind: KindUnavailable, Message: "cannot check the device login: store unavailable", Err: err}
	}
	switch {
	case d.State == store.DeviceDenied:
		return DeviceGrant{}, &devicePollError{"access_denied", "the login was denied by " + d.By}
	case d.State == store.DeviceConsumed:
		return DeviceGrant{}, &devicePollError{"expired_token", "this device code was already used"}
	case d.Expired(now):
		return DeviceGrant{}, &devicePollError{"expired_token", "the device code expired before it was approved: start again"}
	case d.State == store.DevicePending:
		if !d.LastPollAt.IsZero() && now.Sub(d.LastPollAt) < s.human.cfg.DeviceInterval {
			return DeviceGrant{}, &devicePollError{"slow_down", "polled faster than the interval"}
		}
		return DeviceGrant{}, &devicePollError{"authorization_pending", "waiting for someone to approve code " + d.UserCode}
	}
	// Approved: make the key and consume the login in that order; only the
	// poll that consumes it creates the key.
	full, id, secretHash := store.GenerateAPIKey()
	if _, err := s.store.ConsumeDeviceLogin(ctx, hash, id, now); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return DeviceGrant{}, &devicePollError{"expired_token", "this device code was already used"}
		}
		return DeviceGrant{}, internal(err, "completing the device login")
	}
	name := d.Email
	if name == "" {
		name = keyName + " " + d.UserCode
	}
	k := store.APIKey{ID: id, Name: name, Role: d.Role, SecretHash: secretHash, Last4: store.APIKeyLast4(full), CreatedAt: now}
	if err := s.store.CreateAPIKey(ctx, k); err != nil {
		return DeviceGrant{}, internal(err, "creating the key of the device login")
	}
	s.log.Info("device login completed", "user_code", d.UserCode, "key", id, "role", d.Role, "approved_by", d.By)
	return DeviceGrant{APIKey: full, KeyID: id, Role: d.Role, Email: d.Email, UserID: d.Email}, nil
}

func (s *Server) handleDeviceToken(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		DeviceCode    string `json:"deviceCode"`
		DeviceCodeRFC string `json:"device_code"`
	}
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	code := req.DeviceCode
	if code == "" {
		code = req.DeviceCodeRFC
	}
	g, err := s.pollDevice(r.Context(), code, "device login")
	var pe *devicePollError
	if errors.As(err, &pe) {
		// RFC 8628 section 3.5: these are answers, not failures.
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": pe.Code, "error_description": pe.Message, "success": false, "message": pe.Message})
		return nil
	}
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, g)
	return nil
}

// decideDevice approves or denies a device login as c. The role granted is
// never above c's own; anyone but an admin names the key after themself.
func (s *Server) decideDevice(ctx context.Context, c caller, userCode string, approve bool, role store.Role, email string) (store.DeviceLogin, error) {
	code, ok := NormalizeUserCode(userCode)
	if !ok {
		return store.DeviceLogin{}, errorf(KindInvalid, "%q is not a user code (8 letters, XXXX-XXXX)", userCode)
	}
	if c.Role != store.RoleAdmin && c.Role != store.RoleViewer {
		return store.DeviceLogin{}, errorf(KindForbidden, "a %s key cannot decide device logins", c.Role)
	}
	if approve {
		if !role.Valid() {
			return store.DeviceLogin{}, errorf(KindInvalid, "role %q is not one of admin, agent, viewer", role)
		}
		if !mayGrant(c.Role, role) {
			return store.DeviceLogin{}, errorf(KindForbidden, "a %s key cannot grant the %s role", c.Role, role)
		}
		if c.Role != store.RoleAdmin {
			email = c.Name
		}
		// It becomes the new key's name: the identity rules of a user
		// apply (no credential, no control or bidi character, no
		// lookalike), as for X-Armoriq-User.
		u, err := identity.User("email", email)
		if err == nil && len(u) > 200 {
			err = errors.New("email is longer than 200 bytes")
		}
		if err != nil {
			return store.DeviceLogin{}, errorf(KindInvalid, "%v", err) // never echoes the value: it may be a key
		}
		email = u
	}
	d, err := s.store.DecideDeviceLogin(ctx, code, store.DeviceDecision{
		Approve: approve, Role: role, Email: email, ByKeyID: c.KeyID, By: c.Name, At: s.now().UTC(),
	})
	switch {
	case errors.Is(err, store.ErrNotFound):
		return d, errorf(KindNotFound, "no device login with code %s", code)
	case errors.Is(err, store.ErrConflict):
		st := string(d.State)
		if d.State == store.DevicePending {
			st = "expired"
		}
		return d, errorf(KindConflict, "device login %s is %s", code, st)
	case err != nil:
		return d, internal(err, "deciding the device login")
	}
	s.log.Info("device login decided", "user_code", code, "approved", approve, "role", role, "by", c.KeyID)
	return d, nil
}

// handleWhoami tells a key what it is: GET /v1/whoami (armoriq whoami --check).
func (s *Server) handleWhoami(w http.ResponseWriter, r *http.Request) error {
	c := callerFrom(r.Context())
	may := map[store.Role][]string{
		store.RoleAdmin:  {"everything: keys, bundles, approvals, audit, tokens and calls"},
		store.RoleAgent:  {"request intent tokens", "call tools (/invoke, /mcp)", "request approvals of held calls"},
		store.RoleViewer: {"read status, policy and audit", "sign in to the console", "decide approvals a rule names it for"},
	}[c.Role]
	writeJSON(w, http.StatusOK, map[string]any{"valid": true, "key_id": c.KeyID, "name": c.Name, "role": c.Role, "may": may})
	return nil
}

// handleListDevices is GET /v1/devices: device logins of the last day,
// pending first.
func (s *Server) handleListDevices(w http.ResponseWriter, r *http.Request) error {
	list, err := s.store.ListDeviceLogins(r.Context(), s.now().Add(-24*time.Hour))
	if err != nil {
		return &Error{Kind: KindUnavailable, Message: "cannot list device logins", Err: err}
	}
	if list == nil {
		list = []store.DeviceLogin{}
	}
	now := s.now()
	for i := range list {
		if list[i].State == store.DevicePending && list[i].Expired(now) {
			list[i].State = "expired"
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"devices": list})
	return nil
}

// handleDecideDevice is POST /v1/devices/{code}/approve|deny {role, email}.
func (s *Server) handleDecideDevice(approve bool) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		var req struct {
			Role  store.Role `json:"role"`
			Email string     `json:"email"`
		}
		if r.ContentLength != 0 {
			if err := decodeJSON(r, &req); err != nil {
				return err
			}
		}
		d, err := s.decideDevice(r.Context(), callerFrom(r.Context()), r.PathValue("code"), approve, req.Role, req.Email)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, d)
		return nil
	}
}
