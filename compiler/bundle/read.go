package bundle

import (
	"encoding/json"
	"io"
)

// Read parses a bundle without verifying it, for inspection. The signature,
// if any, is returned as written (nil for an unsigned bundle) and must not be
// trusted: gateways call Verify. Errors are *VerifyError (Malformed or
// UnsupportedFormat).
func Read(r io.Reader) (*Bundle, *Signature, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxSize+1))
	if err != nil {
		return nil, nil, malformedf("reading bundle: %v", err)
	}
	files, err := readArchive(data)
	if err != nil {
		return nil, nil, err
	}
	if err := checkFormat(files); err != nil {
		return nil, nil, err
	}
	var sig *Signature
	if f := find(files, SignaturesFile); f != nil {
		jwss, err := parseSignatures(f.data)
		if err != nil {
			if ve, ok := err.(*VerifyError); !ok || ve.Reason != Unsigned {
				return nil, nil, err
			}
		} else {
			sig = jwss[0].signature()
		}
	}
	b, err := decode(files)
	if err != nil {
		return nil, nil, err
	}
	return b, sig, nil
}

func find(files []file, name string) *file {
	for i := range files {
		if files[i].name == name {
			return &files[i]
		}
	}
	return nil
}

// checkFormat refuses a bundle whose manifest declares another format
// version, before anything else is interpreted: a newer writer may have
// changed what the other files mean. A missing or unparseable manifest is
// left to later checks.
func checkFormat(files []file) error {
	f := find(files, ManifestFile)
	if f == nil {
		return nil
	}
	var v struct {
		FormatVersion *int `json:"format_version"`
	}
	if err := json.Unmarshal(f.data, &v); err != nil || v.FormatVersion == nil {
		return nil
	}
	if *v.FormatVersion != FormatVersion {
		return verifyErrorf(UnsupportedFormat, "bundle format version %d is not supported (this build reads version %d)", *v.FormatVersion, FormatVersion)
	}
	return nil
}

// decode turns the bundle's files into a Bundle, strictly: every known file
// must be present and well formed, and no other file may be there.
func decode(files []file) (*Bundle, error) {
	for _, f := range files {
		switch f.name {
		case ManifestFile, PolicyFile, ServersFile, SignaturesFile:
		default:
			return nil, malformedf("unexpected file %q in bundle", f.name)
		}
	}
	var b Bundle
	var s serversFile
	for _, d := range []struct {
		name string
		v    any
	}{{ManifestFile, &b.Manifest}, {PolicyFile, &b.Policy}, {ServersFile, &s}} {
		f := find(files, d.name)
		if f == nil {
			return nil, malformedf("bundle has no %s", d.name)
		}
		if err := strictUnmarshal(f.data, d.v); err != nil {
			return nil, malformedf("%s: %v", d.name, err)
		}
	}
	if b.Manifest.FormatVersion != FormatVersion {
		return nil, verifyErrorf(UnsupportedFormat, "bundle format version %d is not supported (this build reads version %d)", b.Manifest.FormatVersion, FormatVersion)
	}
	if b.Manifest.Sequence < 0 {
		return nil, malformedf("%s: sequence %d is negative", ManifestFile, b.Manifest.Sequence)
	}
	if err := checkIdentityProviders(b.Policy.IdentityProviders); err != nil {
		return nil, malformedf("%s: %v", PolicyFile, err)
	}
	b.Servers = s.Servers
	return &b, nil
}
