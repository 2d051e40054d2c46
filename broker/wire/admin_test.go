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
		{"trailing", append(append([]byte(nil), good...), 0), false},
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
