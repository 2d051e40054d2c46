package dns

import (
	"bytes"
	"encoding/binary"
	"hash/maphash"
	"net/netip"

	mdns "github.com/miekg/dns"
)

// The UDP fast path: most queries are one question for a name and type
// asked many times, so their response bytes are packed once and then
// copied, with the query's ID, RD and CD bits and the case of its name
// patched in. The cached bytes come from the ordinary answer code (answer,
// run on a synthetic query), so the fast path cannot answer differently
// from it: a query the fast parser is not sure about, or whose answer
// depends on more than the cache key, takes the full miekg/dns path.
//
// Cache key: the question name lowercased (wire form), type, class and the
// EDNS shape (none, OPT without DO, OPT with DO). Static answers are one
// byte string per key. A pool answer depends on the sites chosen; the
// choice is made per query, exactly as the slow path makes it (health,
// geography, weights, rotation), and the packed answer is looked up by the
// chosen sites (and their current weights, which SRV answers carry). So a
// health or weight change takes effect on the next query; nothing cached
// can go stale. The tables themselves never change (no reload: a new
// config is a new process).

// Limits of the cache of one UDP worker. When a limit is hit the cache (or
// the pool entry's table) starts over: bounded memory under random names.
const (
	fastMaxEntries    = 1 << 14
	fastMaxSelections = 256
	fastMaxName       = 250 // wire octets; longer names take the slow path
	fastSeenSlots     = 4096
)

// EDNS shapes of a key.
const (
	ednsNone byte = iota
	ednsPlain
	ednsDO
)

// fastQuery is what the fast parser takes from a query.
type fastQuery struct {
	id      uint16
	flags   uint16
	name    []byte // wire form as asked, into the packet
	qtype   uint16
	qclass  uint16
	edns    byte
	udpSize int // the client's limit for this response
}

// parseFast accepts only the plain shape of a query: QR clear, opcode
// QUERY, one question whose name has no compression and only letters,
// digits, '-' and '_', no answer or authority records, at most one OPT
// record (root owner, version 0, options only cookie or padding, no ECS),
// and nothing after it. Anything else returns false and goes to the slow
// path, which owns every error answer.
func parseFast(raw []byte, maxUDP int) (q fastQuery, ok bool) {
	if len(raw) < 12+1+4 {
		return q, false
	}
	q.id = binary.BigEndian.Uint16(raw)
	q.flags = binary.BigEndian.Uint16(raw[2:])
	if q.flags&0xF800 != 0 { // QR or an opcode other than QUERY
		return q, false
	}
	if binary.BigEndian.Uint16(raw[4:]) != 1 || binary.BigEndian.Uint16(raw[6:]) != 0 || binary.BigEndian.Uint16(raw[8:]) != 0 {
		return q, false
	}
	ar := binary.BigEndian.Uint16(raw[10:])
	if ar > 1 {
		return q, false
	}
	off := 12
	for {
		if off >= len(raw) {
			return q, false
		}
		l := int(raw[off])
		if l == 0 {
			off++
			break
		}
		if l > 63 || off+1+l > len(raw) {
			return q, false
		}
		for _, c := range raw[off+1 : off+1+l] {
			if !plainLabelByte(c) {
				return q, false
			}
		}
		off += 1 + l
		if off-12 > fastMaxName {
			return q, false
		}
	}
	q.name = raw[12:off]
	if off+4 > len(raw) {
		return q, false
	}
	q.qtype = binary.BigEndian.Uint16(raw[off:])
	q.qclass = binary.BigEndian.Uint16(raw[off+2:])
	off += 4
	q.udpSize = mdns.MinMsgSize
	if ar == 1 {
		// OPT: root name, type 41, class = UDP size, TTL = ext-rcode,
		// version, flags; RDATA = options.
		if off+11 > len(raw) || raw[off] != 0 || binary.BigEndian.Uint16(raw[off+1:]) != mdns.TypeOPT {
			return q, false
		}
		size := int(binary.BigEndian.Uint16(raw[off+3:]))
		if raw[off+6] != 0 { // version
			return q, false
		}
		do := raw[off+7]&0x80 != 0
		rdlen := int(binary.BigEndian.Uint16(raw[off+9:]))
		off += 11
		if off+rdlen != len(raw) {
			return q, false
		}
		for o := off; o < len(raw); {
			if o+4 > len(raw) {
				return q, false
			}
			code, olen := binary.BigEndian.Uint16(raw[o:]), int(binary.BigEndian.Uint16(raw[o+2:]))
			if code != mdns.EDNS0COOKIE && code != mdns.EDNS0PADDING || o+4+olen > len(raw) {
				return q, false
			}
			o += 4 + olen
		}
		off = len(raw)
		q.edns = ednsPlain
		if do {
			q.edns = ednsDO
		}
		q.udpSize = min(max(size, mdns.MinMsgSize), maxUDP)
	}
	if off != len(raw) {
		return q, false
	}
	return q, true
}

func plainLabelByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
}

// packed is one cached response: ID 0, RD and CD clear, the question name
// lowercased; nameAt are the offsets of every copy of the asker's name.
type packed struct {
	b      []byte
	nameAt []uint16
}

// fastEntry is the cache entry of one key.
type fastEntry struct {
	slow   bool    // the answer cannot be cached: always the slow path
	static *packed // the answer, when it depends on nothing else
	pool   *pool   // else the pool the answer depends on
	bySel  map[selKey]*packed
}

// selKey names a choice of sites: each site's index and current weight.
type selKey struct {
	n     uint8
	sites [MaxAnswers]uint64
}

func keyOf(sites []*site) selKey {
	k := selKey{n: uint8(len(sites))}
	for i, st := range sites {
		k.sites[i] = uint64(uint32(st.target.Index))<<32 | uint64(uint32(st.target.Weight()))
	}
	return k
}

// fastCache is the cache of one UDP worker (workers share nothing, so no
// locks).
type fastCache struct {
	s       *Server
	entries map[string]*fastEntry
	key     []byte
	hits    uint64 // answered from the cache (tests read it)
	// seen is the admission filter: a key is cached the second time it is
	// asked (its hash was left in its slot the first time), so a flood of
	// random names costs one slow-path answer each, not a cache fill.
	seen [fastSeenSlots]uint64
	seed maphash.Seed
}

func newFastCache(s *Server) *fastCache {
	return &fastCache{s: s, entries: map[string]*fastEntry{}, key: make([]byte, 0, 256+5), seed: maphash.MakeSeed()}
}

// respond answers one UDP query from src: the response bytes, appended to
// out[:0], or nil when nothing must be sent.
func (c *fastCache) respond(raw []byte, src netip.Addr, out []byte) []byte {
	if b, ok := c.fast(raw, src, out); ok {
		c.hits++
		return b
	}
	return c.s.serveSlow(raw, src, true)
}

// fast answers from the cache; false means take the slow path.
func (c *fastCache) fast(raw []byte, src netip.Addr, out []byte) ([]byte, bool) {
	q, ok := parseFast(raw, c.s.t.maxUDP)
	if !ok {
		return nil, false
	}
	k := c.key[:0]
	for _, ch := range q.name {
		if ch >= 'A' && ch <= 'Z' {
			ch += 'a' - 'A'
		}
		k = append(k, ch)
	}
	k = binary.BigEndian.AppendUint16(k, q.qtype)
	k = binary.BigEndian.AppendUint16(k, q.qclass)
	k = append(k, q.edns)
	c.key = k
	e := c.entries[string(k)]
	if e == nil {
		h := maphash.Bytes(c.seed, k)
		if slot := &c.seen[h%fastSeenSlots]; *slot != h {
			*slot = h
			return nil, false
		}
		if len(c.entries) >= fastMaxEntries {
			clear(c.entries)
		}
		e = c.s.fill(q, k)
		c.entries[string(k)] = e
	}
	p := e.static
	var sites []*site
	var buf [MaxAnswers]*site
	switch {
	case e.slow:
		return nil, false
	case e.pool != nil:
		region := ""
		if len(e.pool.geo) > 0 && src.IsValid() {
			region = c.s.t.regionOf(src)
		}
		sites, _ = e.pool.selectSites(region, buf[:0])
		sk := keyOf(sites)
		if p = e.bySel[sk]; p == nil {
			// The selection was made (and the rotation advanced): from here
			// on this query must be answered with it, not re-selected.
			p = c.s.packFor(q, k, sites, nil)
			if p == nil {
				return nil, false // not reached: the key's entry would be slow
			}
			if len(e.bySel) >= fastMaxSelections {
				clear(e.bySel)
			}
			e.bySel[sk] = p
		}
	}
	if len(p.b) > q.udpSize {
		// fit would shrink it for this client's buffer: answer builds it.
		if e.pool != nil {
			// The sites were chosen (and the rotation advanced): answer
			// with them rather than choosing again.
			return c.s.answerWith(raw, src, sites), true
		}
		return nil, false
	}
	out = append(out[:0], p.b...)
	binary.BigEndian.PutUint16(out, q.id)
	out[2] |= byte(q.flags>>8) & 0x01 // RD
	out[3] |= byte(q.flags) & 0x10    // CD
	for _, at := range p.nameAt {
		copy(out[at:], q.name)
	}
	return out, true
}

// fill builds the entry for key k by asking answer about a synthetic query.
func (s *Server) fill(q fastQuery, k []byte) *fastEntry {
	h := &hooks{probe: true}
	resp := s.answer(synthQuery(q, k, false, s.t.maxUDP), netip.Addr{}, true, h)
	if h.pool != nil {
		return &fastEntry{pool: h.pool, bySel: map[selKey]*packed{}}
	}
	if h.fitted {
		return &fastEntry{slow: true}
	}
	p := s.packFor(q, k, nil, resp) // no pool: the probe's answer is the lower-case one
	if p == nil {
		return &fastEntry{slow: true}
	}
	return &fastEntry{static: p}
}

// packFor packs the answer to the key's query (with sites as the pool's
// choice, if any), once with the name in lower and once in upper case: the
// bytes that differ are where the asker's name is copied. It returns nil
// when the answer cannot be cached. lower, when not nil, is the lower-case
// answer already built (and not fitted).
func (s *Server) packFor(q fastQuery, k []byte, sites []*site, lower *mdns.Msg) *packed {
	var bs [2][]byte
	for i, upper := range []bool{false, true} {
		h := &hooks{sel: sites}
		resp := lower
		if upper || resp == nil {
			resp = s.answer(synthQuery(q, k, upper, s.t.maxUDP), netip.Addr{}, true, h)
		}
		if h.fitted || (sites == nil && h.pool != nil) {
			return nil
		}
		b, err := resp.Pack()
		if err != nil {
			return nil
		}
		bs[i] = b
	}
	lo, up := bs[0], bs[1]
	if len(lo) != len(up) || len(lo) > 0xFFFF {
		return nil
	}
	n := len(q.name)
	lname, uname := k[:n], bytes.ToUpper(k[:n])
	p := &packed{b: lo}
	check := bytes.Clone(lo)
	for off := 12; off+n <= len(lo); {
		if bytes.Equal(lo[off:off+n], lname) && bytes.Equal(up[off:off+n], uname) {
			p.nameAt = append(p.nameAt, uint16(off))
			copy(check[off:], uname)
			off += n
			continue
		}
		off++
	}
	if !bytes.Equal(check, up) || len(p.nameAt) == 0 || p.nameAt[0] != 12 {
		return nil
	}
	return p
}

// synthQuery is the query a key stands for: ID 0, RD and CD clear, the
// name in lower or upper case, and an OPT advertising the largest size we
// answer when the key has EDNS (a smaller client size is checked per
// query).
func synthQuery(q fastQuery, k []byte, upper bool, maxUDP int) *mdns.Msg {
	var name []byte
	w := k[:len(q.name)]
	for i := 0; w[i] != 0; i += 1 + int(w[i]) {
		name = append(name, w[i+1:i+1+int(w[i])]...)
		name = append(name, '.')
	}
	if len(name) == 0 {
		name = append(name, '.')
	}
	if upper {
		name = bytes.ToUpper(name)
	}
	m := new(mdns.Msg)
	m.Question = []mdns.Question{{Name: string(name), Qtype: q.qtype, Qclass: q.qclass}}
	if q.edns != ednsNone {
		o := &mdns.OPT{Hdr: mdns.RR_Header{Name: ".", Rrtype: mdns.TypeOPT}}
		o.SetUDPSize(uint16(maxUDP))
		if q.edns == ednsDO {
			o.SetDo()
		}
		m.Extra = []mdns.RR{o}
	}
	return m
}

// answerWith answers a query the fast parser accepted, with sites as the
// pool's choice.
func (s *Server) answerWith(raw []byte, src netip.Addr, sites []*site) []byte {
	req := new(mdns.Msg)
	if err := req.Unpack(raw); err != nil {
		return s.serveSlow(raw, src, true) // not reached: parseFast accepted it
	}
	b, err := s.answer(req, src, true, &hooks{sel: sites}).Pack()
	if err != nil {
		return nil
	}
	return b
}

// serveSlow answers a raw UDP query the way miekg/dns's server does
// (header check with accept, unpack, FORMERR or NOTIMP for what it
// rejects, nothing for what it ignores), then ServeDNS's answer. It
// returns the packed response or nil.
func (s *Server) serveSlow(raw []byte, src netip.Addr, udp bool) []byte {
	if len(raw) < 12 {
		return nil
	}
	dh := mdns.Header{
		Id: binary.BigEndian.Uint16(raw), Bits: binary.BigEndian.Uint16(raw[2:]),
		Qdcount: binary.BigEndian.Uint16(raw[4:]), Ancount: binary.BigEndian.Uint16(raw[6:]),
		Nscount: binary.BigEndian.Uint16(raw[8:]), Arcount: binary.BigEndian.Uint16(raw[10:]),
	}
	req := new(mdns.Msg)
	action := accept(dh)
	var resp *mdns.Msg
	switch action {
	case mdns.MsgIgnore:
		return nil
	case mdns.MsgAccept:
		if err := req.Unpack(raw); err == nil {
			resp = s.answer(req, src, udp, nil)
			break
		}
		fallthrough
	default: // MsgReject, MsgRejectNotImplemented, or an unpack error
		if action != mdns.MsgAccept {
			req.MsgHdr = headerOf(dh)
		}
		opcode := req.Opcode
		req.SetRcodeFormatError(req)
		req.Zero = false
		if action == mdns.MsgRejectNotImplemented {
			req.Opcode = opcode
			req.Rcode = mdns.RcodeNotImplemented
		}
		req.Ns, req.Answer, req.Extra = nil, nil, nil
		resp = req
	}
	if resp == nil {
		return nil
	}
	b, err := resp.Pack()
	if err != nil {
		s.log.Debug("dns pack failed", "client", src.String(), "err", err)
		return nil
	}
	return b
}

// headerOf is miekg/dns's Msg.setHdr (unexported there).
func headerOf(dh mdns.Header) mdns.MsgHdr {
	return mdns.MsgHdr{
		Id:                 dh.Id,
		Response:           dh.Bits&(1<<15) != 0,
		Opcode:             int(dh.Bits>>11) & 0xF,
		Authoritative:      dh.Bits&(1<<10) != 0,
		Truncated:          dh.Bits&(1<<9) != 0,
		RecursionDesired:   dh.Bits&(1<<8) != 0,
		RecursionAvailable: dh.Bits&(1<<7) != 0,
		Zero:               dh.Bits&(1<<6) != 0,
		AuthenticatedData:  dh.Bits&(1<<5) != 0,
		CheckingDisabled:   dh.Bits&(1<<4) != 0,
		Rcode:              int(dh.Bits & 0xF),
	}
}
