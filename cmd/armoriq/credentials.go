package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// credentials is ~/.armoriq/credentials.json: the official SDKs' fields
// (apiKey, email, userId, orgId, savedAt) plus the gateway it came from,
// which the SDKs ignore.
type credentials struct {
	APIKey  string `json:"apiKey"`
	Email   string `json:"email"`
	UserID  string `json:"userId"`
	OrgID   string `json:"orgId"`
	SavedAt string `json:"savedAt"`
	Gateway string `json:"gateway,omitempty"`
	KeyID   string `json:"keyId,omitempty"`
	Role    string `json:"role,omitempty"`
}

// credentialsPath is where the credentials file lives: $HOME/.armoriq.
func credentialsPath(e *env) (string, error) {
	home := e.Getenv("HOME")
	if home == "" {
		var err error
		if home, err = os.UserHomeDir(); err != nil {
			return "", fmt.Errorf("cannot find the home directory for the credentials file: %v", err)
		}
	}
	return filepath.Join(home, ".armoriq", "credentials.json"), nil
}

// readCredentials returns the credentials file, or ok=false when there is
// none. A file that exists but cannot be used is an error.
func readCredentials(e *env) (c credentials, path string, ok bool, err error) {
	path, err = credentialsPath(e)
	if err != nil {
		return c, "", false, err
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return c, path, false, nil
	}
	if err != nil {
		return c, path, false, fmt.Errorf("reading %s: %v", path, err)
	}
	if err := json.Unmarshal(data, &c); err != nil {
		return c, path, false, fmt.Errorf("%s is not valid JSON: %v (remove it, or run armoriq login again)", path, err)
	}
	return c, path, true, nil
}

// writeCredentials writes the file with mode 0600 in a 0700 directory,
// replacing it atomically.
func writeCredentials(e *env, c credentials) (string, error) {
	path, err := credentialsPath(e)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", err
	}
	c.SavedAt = time.Now().UTC().Format(time.RFC3339)
	data, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return "", err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".credentials-*.json")
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return "", err
	}
	if _, err := tmp.Write(append(data, '\n')); err != nil {
		tmp.Close()
		return "", err
	}
	if err := tmp.Close(); err != nil {
		return "", err
	}
	return path, os.Rename(tmp.Name(), path)
}
