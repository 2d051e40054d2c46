package discovery

import (
	"net/netip"
	"strconv"
	"strings"
	"testing"
)

// inetAton is glibc's inet_aton, the reading a C resolver gives a host
// name made of numbers: 1-4 parts (decimal, 0-prefixed octal, 0x hex);
// the last part fills the remaining bytes. A trailing dot is taken.
func inetAton(s string) (netip.Addr, bool) {
	parts := strings.Split(strings.TrimSuffix(s, "."), ".")
	if len(parts) > 4 {
		return netip.Addr{}, false
	}
	vals := make([]uint64, len(parts))
	for i, p := range parts {
		base, digits := 10, p
		switch {
		case len(p) >= 2 && (p[:2] == "0x" || p[:2] == "0X"):
			base, digits = 16, p[2:]
			if digits == "" {
				digits = "0"
			}
		case len(p) > 1 && p[0] == '0':
			base, digits = 8, p[1:]
		}
		v, err := strconv.ParseUint(digits, base, 32)
		if err != nil || p == "" {
			return netip.Addr{}, false
		}
		vals[i] = v
	}
	var n uint64
	for i, v := range vals[:len(vals)-1] {
		if v > 255 {
			return netip.Addr{}, false
		}
		n |= v << (24 - 8*i)
	}
	last := vals[len(vals)-1]
	if last >= 1<<(8*(5-len(vals))) {
		return netip.Addr{}, false
	}
	n |= last
	return netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}), true
}

// FuzzValidAddress: an address ValidAddress accepts names no
// link-local, unspecified or multicast IP however it is read: as Go
// parses it, or as a C resolver's inet_aton reads its host.
func FuzzValidAddress(f *testing.F) {
	for _, s := range []string{"127.0.0.1:80", "169.254.169.254:80", "2852039166:80", "0xa9fea9fe:80", "0251.0376.0251.0376:80",
		"169.254.43518:80", "[::ffff:169.254.169.254]:80", "[fe80::1%eth0]:80", "rides-1.internal:80", "0x.example:80", "1e100.net:443", "0:80"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if ValidAddress(s) != nil {
			return
		}
		host := s[:strings.LastIndexByte(s, ':')]
		host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
		for _, read := range []func(string) (netip.Addr, bool){
			func(h string) (netip.Addr, bool) { a, err := netip.ParseAddr(h); return a, err == nil },
			inetAton,
		} {
			if ip, ok := read(host); ok {
				if ip = ip.Unmap(); ip.IsLinkLocalUnicast() || ip.IsUnspecified() || ip.IsMulticast() {
					t.Fatalf("ValidAddress(%q) accepted %s", s, ip)
				}
			}
		}
	})
}

func TestInetAton(t *testing.T) {
	for in, want := range map[string]string{"2852039166": "169.254.169.254", "0xa9fea9fe": "169.254.169.254",
		"0251.0376.0251.0376": "169.254.169.254", "169.254.43518": "169.254.169.254", "127.1": "127.0.0.1", "10.0.0.1.": "10.0.0.1"} {
		if got, ok := inetAton(in); !ok || got.String() != want {
			t.Errorf("inetAton(%q) = %v %v, want %s", in, got, ok, want)
		}
	}
	for _, in := range []string{"", "a", "1.2.3.4.5", "256.1.1.1", "09", "1e100"} {
		if got, ok := inetAton(in); ok {
			t.Errorf("inetAton(%q) = %v, want no address", in, got)
		}
	}
}
