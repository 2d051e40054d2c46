package wire

import (
	"bytes"
	"errors"
	"testing"
)

func TestAdminRoundTrip(t *testing.T) {
	for _, k := range []Kind{KindQueue, KindTopic, KindStream} {
		t.Run(k.String(), func(t *testing.T) {
			for _, settings := range [][]byte{nil, []byte(`{"max_deliveries":3}`)} {
				got, err := DecodeDeclareReq(AppendDeclareReq(nil, &DeclareReq{Kind: k, Name: "orders", Settings: settings}))
				if err != nil || got.Kind != k || got.Name != "orders" || !bytes.Equal(got.Settings, settings) {
					t.Fatalf("declare %q: %+v %v", settings, got, err)
				}
			}
			del, err := DecodeDeleteReq(AppendDeleteReq(nil, &DeleteReq{Kind: k, Name: "orders"}))
			if err != nil || del.Kind != k || del.Name != "orders" {
				t.Fatalf("delete: %+v %v", del, err)
			}
		})
	}
}

func TestAdminMalformed(t *testing.T) {
	good := AppendDeclareReq(nil, &DeclareReq{Kind: KindQueue, Name: "q", Settings: []byte(`{}`)})
	big := AppendDeclareReq(nil, &DeclareReq{Kind: KindQueue, Name: "q", Settings: make([]byte, MaxSettings+1)})
	cases := []struct {
		name      string
		body      []byte
		badDelete bool // also malformed as a Delete body
	}{
		{"empty", nil, true},
		{"kind 0", AppendDeleteReq(nil, &DeleteReq{Kind: 0, Name: "q"}), true},
		{"kind 4", AppendDeleteReq(nil, &DeleteReq{Kind: 4, Name: "q"}), true},
		{"truncated", good[:len(good)-1], false},
		{"trailing", append(append([]byte(nil), good...), 0, 0), false}, // flags 0, then a stray byte
		{"settings too large", big, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := DecodeDeclareReq(tc.body); !errors.Is(err, ErrMalformed) {
				t.Errorf("declare: %v, want ErrMalformed", err)
			}
			if !tc.badDelete {
				return
			}
			if _, err := DecodeDeleteReq(tc.body); !errors.Is(err, ErrMalformed) {
				t.Errorf("delete: %v, want ErrMalformed", err)
			}
		})
	}
}

func TestDeclareIfAbsent(t *testing.T) {
	plain := AppendDeclareReq(nil, &DeclareReq{Kind: KindTopic, Name: "t", Settings: []byte(`{}`)})
	flagged := AppendDeclareReq(nil, &DeclareReq{Kind: KindTopic, Name: "t", Settings: []byte(`{}`), IfAbsent: true})
	// Without the flag the body is what older clients send.
	if !bytes.Equal(flagged[:len(plain)], plain) || len(flagged) != len(plain)+1 {
		t.Fatalf("plain %x, flagged %x", plain, flagged)
	}
	for _, c := range []struct {
		body     []byte
		ifAbsent bool
	}{{plain, false}, {flagged, true}, {append(append([]byte(nil), plain...), 0), false}} {
		r, err := DecodeDeclareReq(c.body)
		if err != nil || r.IfAbsent != c.ifAbsent {
			t.Fatalf("%x: %+v %v", c.body, r, err)
		}
	}
	for _, bad := range [][]byte{
		append(append([]byte(nil), plain...), 2),       // unknown flag
		append(append([]byte(nil), plain...), 0x80),    // truncated varint
		append(append([]byte(nil), flagged...), 0),     // trailing after flags
		append(append([]byte(nil), plain...), 0xff, 1), // high unknown bits
	} {
		if _, err := DecodeDeclareReq(bad); !errors.Is(err, ErrMalformed) {
			t.Errorf("%x: %v, want ErrMalformed", bad, err)
		}
	}
}

func TestBindRoundTrip(t *testing.T) {
	for _, r := range []BindReq{
		{Op: OpBind, Topic: "rides", Queue: "audit"},
		{Op: OpBind, Topic: "rides", Queue: "rides.g1", CreateQueue: true},
		{Op: OpUnbind, Topic: "rides", Queue: "audit"},
		{Op: OpBind, Topic: "a b", Queue: "\x00\xff/ü"}, // names are the broker's to refuse
	} {
		got, err := DecodeBindReq(AppendBindReq(nil, &r))
		if err != nil || got != r {
			t.Fatalf("%+v: %+v %v", r, got, err)
		}
	}
	for _, c := range []bool{false, true} {
		if got, err := DecodeBindOK(AppendBindOK(nil, c)); err != nil || got != c {
			t.Fatalf("BindOK %v: %v %v", c, got, err)
		}
	}
}

func TestBindMalformed(t *testing.T) {
	good := AppendBindReq(nil, &BindReq{Op: OpBind, Topic: "t", Queue: "q"})
	for name, body := range map[string][]byte{
		"empty":             nil,
		"op 0":              AppendBindReq(nil, &BindReq{Op: 0, Topic: "t", Queue: "q"}),
		"op 3":              AppendBindReq(nil, &BindReq{Op: 3, Topic: "t", Queue: "q"}),
		"unknown flag":      append([]byte{OpBind, 2}, good[2:]...),
		"create on unbind":  AppendBindReq(nil, &BindReq{Op: OpUnbind, Topic: "t", Queue: "q", CreateQueue: true}),
		"truncated":         good[:len(good)-1],
		"trailing":          append(append([]byte(nil), good...), 0),
		"no queue":          good[:len(good)-2],
		"huge length claim": {OpBind, 0, 0xff, 0xff, 0xff, 0xff, 0x0f, 't'},
	} {
		if _, err := DecodeBindReq(body); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v, want ErrMalformed", name, err)
		}
	}
	for _, body := range [][]byte{nil, {2}, {1, 0}} {
		if _, err := DecodeBindOK(body); !errors.Is(err, ErrMalformed) {
			t.Errorf("BindOK %x: %v, want ErrMalformed", body, err)
		}
	}
}
