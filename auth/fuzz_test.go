package auth

import (
	"encoding/base64"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"
)

// FuzzParseToken feeds arbitrary Authorization header values to
// Authenticate with every method accepted. It must never panic, must fail
// only with a well-formed *Error, and must never authenticate anything but
// one of the known valid credentials.
func FuzzParseToken(f *testing.F) {
	cfg := baseConfig(f)
	cfg.AllowInsecureBasic = true
	a := newAuth(f, cfg, nil)
	c := claims("carol")
	valid := []string{
		sign(f, jwt.SigningMethodHS256, []byte(testSecret), c, ""),
		sign(f, jwt.SigningMethodRS256, rsaKeys()[0], c, "k1"),
		sign(f, jwt.SigningMethodES256, ecKeys()[0], c, ""),
	}
	for _, tok := range valid {
		f.Add("Bearer " + tok)
		parts := strings.Split(tok, ".")
		f.Add("Bearer " + parts[0] + "." + parts[1] + ".")
		f.Add("Bearer " + b64([]byte(`{"alg":"none"}`)) + "." + parts[1] + ".")
		f.Add("Bearer " + b64([]byte(`{"alg":"HS256","kid":{"x":1},"crit":["b64"]}`)) + "." + parts[1] + "." + parts[2])
	}
	f.Add("Bearer " + testKey)
	f.Add("Basic " + base64.StdEncoding.EncodeToString([]byte("alice:alice-password")))
	f.Add("Basic " + base64.StdEncoding.EncodeToString([]byte("alice:")))
	f.Add("Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiJ9.")
	f.Add("Bearer ...")
	f.Add("")

	f.Fuzz(func(t *testing.T, header string) {
		r := req(true)
		r.Header.Set("Authorization", header)
		id, err := a.Authenticate(r, AllMethods)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || id != nil || e.Code == "" || (e.Status != 401 && e.Status != 403 && e.Status != 503) {
				t.Fatalf("Authenticate(%q) = %v, %v: want nil and a typed error", header, id, err)
			}
			if e.Status == 401 && len(e.Challenges) == 0 {
				t.Fatalf("Authenticate(%q): 401 without a challenge", header)
			}
			return
		}
		scheme, cred, _ := strings.Cut(header, " ")
		cred = strings.TrimLeft(cred, " ")
		ok := false
		switch strings.ToLower(scheme) {
		case "bearer":
			ok = cred == testKey || cred == testKey2 || slices.Contains(valid, cred)
		case "basic":
			dec, _ := base64.StdEncoding.DecodeString(cred)
			ok = string(dec) == "alice:alice-password"
		}
		if !ok {
			t.Fatalf("Authenticate(%q) authenticated %+v", header, id)
		}
	})
}
