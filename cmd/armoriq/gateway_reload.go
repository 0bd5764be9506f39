package main

import (
	"context"
	"crypto/ed25519"
	"log/slog"
	"maps"
	"os"
	"strings"

	"github.com/armoriq/controlplane/compiler/bundle"
	"github.com/armoriq/controlplane/runtime/gateway"
	"github.com/spf13/pflag"
)

// reloadable names the settings SIGHUP applies to a running gateway: the
// bundle-signing keys it trusts (for bundles activated from now on), the
// longest token validity and the call timeout (for tokens and calls from
// now on), the shutdown timeout, and the admin key file (its key is made
// sure to exist, as at start; an older admin key stays valid until
// revoked). Every other setting is bound to a listener, the store, the
// data directory or the adapter processes, and changes only at restart.
var reloadable = map[string]bool{
	"trust-key": true, "max-token-ttl": true, "call-timeout": true,
	"shutdown-timeout": true, "admin-key-file": true, "settings": true,
}

// loadTrustKeys reads the bundle-signing public keys to trust.
func loadTrustKeys(paths []string) (map[string]ed25519.PublicKey, error) {
	trusted := make(map[string]ed25519.PublicKey)
	for _, path := range paths {
		pub, id, err := bundle.LoadPublicKey(strings.TrimSpace(path))
		if err != nil {
			return nil, usageErrorf("--trust-key %s: %v", path, err)
		}
		trusted[id] = pub
	}
	return trusted, nil
}

// reloadOptions reads the settings again as at start: the command line
// as it was, then the environment, then the settings file as it is now.
func reloadOptions(cur *gatewayOptions, getenv func(string) string) (*gatewayOptions, error) {
	next := &gatewayOptions{cli: cur.cli}
	fs := pflag.NewFlagSet("gateway", pflag.ContinueOnError)
	next.define(fs)
	next.flags = fs
	var err error
	cur.flags.VisitAll(func(f *pflag.Flag) {
		if err != nil || !cur.cli[f.Name] {
			return
		}
		nf := fs.Lookup(f.Name)
		if sv, ok := f.Value.(pflag.SliceValue); ok {
			err = nf.Value.(pflag.SliceValue).Replace(sv.GetSlice())
			nf.Changed = true
			return
		}
		err = fs.Set(f.Name, f.Value.String())
	})
	if err != nil {
		return nil, err
	}
	if err := flagsFromEnv(fs, getenv); err != nil {
		return nil, err
	}
	if err := flagsFromFile(fs, cur.settings, getenv); err != nil {
		return nil, err
	}
	if err := next.check(); err != nil {
		return nil, err
	}
	return next, nil
}

// reloadGateway applies the settings file's reloadable settings to a
// running gateway on SIGHUP. A file that does not parse, or a key that
// cannot be read, changes nothing; a changed setting that is not
// reloadable is named in a warning and waits for a restart.
func reloadGateway(ctx context.Context, e *env, cur *gatewayOptions, srv *gateway.Server, local map[string]ed25519.PublicKey, log *slog.Logger) {
	if cur.settings == "" {
		log.Warn("SIGHUP: there is no --settings file to re-read")
		return
	}
	next, err := reloadOptions(cur, e.Getenv)
	if err != nil {
		log.Error("SIGHUP: settings not applied", "file", cur.settings, "error", err)
		return
	}
	trusted, err := loadTrustKeys(next.trustKeys)
	if err != nil {
		log.Error("SIGHUP: settings not applied", "file", cur.settings, "error", err)
		return
	}
	maps.Copy(trusted, local)
	var adminKey string
	if next.adminKey != "" {
		data, err := os.ReadFile(next.adminKey)
		if err != nil {
			log.Error("SIGHUP: settings not applied", "file", cur.settings, "error", err)
			return
		}
		adminKey = strings.TrimSpace(string(data))
	}
	next.flags.VisitAll(func(f *pflag.Flag) {
		if old := cur.flags.Lookup(f.Name); !reloadable[f.Name] && old != nil && old.Value.String() != f.Value.String() {
			log.Warn("SIGHUP: this setting changed but takes effect only at restart", "setting", f.Name)
		}
	})
	if adminKey != "" {
		if _, err := srv.EnsureAdminKey(ctx, adminKey); err != nil {
			log.Error("SIGHUP: settings not applied: --admin-key-file", "file", next.adminKey, "error", err)
			return
		}
	}
	if err := srv.Reload(gateway.Settings{TrustedKeys: trusted, MaxTokenTTL: next.maxTTL, CallTimeout: next.callTimeout}); err != nil {
		log.Error("SIGHUP: settings not applied", "error", err)
		return
	}
	cur.trustKeys, cur.maxTTL, cur.callTimeout, cur.shutdown, cur.adminKey = next.trustKeys, next.maxTTL, next.callTimeout, next.shutdown, next.adminKey
	log.Info("SIGHUP: settings reloaded", "file", cur.settings, "trusted_keys", len(trusted),
		"max_token_ttl", next.maxTTL, "call_timeout", next.callTimeout, "shutdown_timeout", next.shutdown)
}
