package wire

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestAuthReqRoundTrip(t *testing.T) {
	in := AuthReq{Method: AuthPassword, User: "alice", Secret: []byte("s3cret")}
	got, err := DecodeAuthReq(AppendAuthReq(nil, &in))
	if err != nil {
		t.Fatal(err)
	}
	if got.Version != AuthVersion || got.Method != in.Method || got.User != in.User || !bytes.Equal(got.Secret, in.Secret) {
		t.Fatalf("round trip: got %+v, want %+v", got, in)
	}
	u, err := DecodeAuthOK(AppendAuthOK(nil, "alice"))
	if err != nil || u != "alice" {
		t.Fatalf("AuthOK: %q %v", u, err)
	}
}

// An attacker's Auth frames: each is a clear ErrMalformed, never a panic.
func TestAuthReqHostile(t *testing.T) {
	good := AppendAuthReq(nil, &AuthReq{Method: AuthToken, Secret: []byte("0123456789abcdef")})
	cases := map[string]struct {
		body []byte
		want string
	}{
		"empty":          {nil, "bad varint"},
		"future version": {AppendAuthReq(nil, &AuthReq{Version: 2, Method: AuthToken}), "auth version 2: this broker speaks version 1"},
		"method 0":       {[]byte{1, 0}, "unknown auth method 0"},
		"method 9":       {[]byte{1, 9, 0, 0}, "unknown auth method 9"},
		"no method":      {[]byte{1}, "missing byte"},
		"short user":     {[]byte{1, 1, 5, 'a'}, "5 bytes wanted, 1 left"},
		"huge secret":    {[]byte{1, 1, 0, 0xff, 0xff, 0xff, 0xff, 0x0f}, "bytes wanted"},
		"trailing":       {append(append([]byte(nil), good...), 0), "1 trailing bytes"},
		"too long":       {append([]byte{1, 2, 0}, AppendBytes(nil, make([]byte, MaxAuthBody))...), "limit 4096"},
	}
	for name, c := range cases {
		_, err := DecodeAuthReq(c.body)
		if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want ErrMalformed containing %q", name, err, c.want)
		}
	}
	if _, err := DecodeAuthOK([]byte{7, 0}); err == nil || !strings.Contains(err.Error(), "auth version 7") {
		t.Errorf("AuthOK of version 7: %v", err)
	}
}

func FuzzDecodeAuthReq(f *testing.F) {
	f.Add(AppendAuthReq(nil, &AuthReq{Method: AuthPassword, User: "u", Secret: []byte("p")}))
	f.Add(AppendAuthReq(nil, &AuthReq{Method: AuthCertificate}))
	f.Add([]byte{2, 1, 0, 0})
	f.Add([]byte{1, 1, 0x80})
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := DecodeAuthReq(body)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		// What decodes survives re-encoding (varints may be written
		// longer than needed, so compare the fields, not the bytes).
		again, err := DecodeAuthReq(AppendAuthReq(nil, &r))
		if err != nil || again.Version != r.Version || again.Method != r.Method || again.User != r.User || !bytes.Equal(again.Secret, r.Secret) {
			t.Fatalf("re-encoded %+v as %+v (%v)", r, again, err)
		}
	})
}
