package dns

import (
	"net/netip"

	mdns "github.com/miekg/dns"
)

// maxChase bounds the CNAME chain followed inside a zone.
const maxChase = 8

// hooks let the UDP fast path (fast.go) build its packed answers with the
// same code as every other query: it learns which pool an answer depends
// on, fixes the selection of sites, and learns whether fit changed the
// response (then the answer depends on the client's buffer size).
type hooks struct {
	probe  bool    // do not select sites: only record the pool
	sel    []*site // the sites to answer with (instead of selecting)
	pool   *pool   // set when the answer came from a pool
	fitted bool    // set when fit had to shrink the response
}

// answer builds the response to req from a client at src (udp tells the
// transport). It returns nil when nothing must be sent. h is nil except
// for the fast path's cache fills.
func (s *Server) answer(req *mdns.Msg, src netip.Addr, udp bool, h *hooks) *mdns.Msg {
	resp := new(mdns.Msg)
	// SetReply echoes the question exactly as asked (0x20 case kept) and
	// copies ID, opcode and RD; RA stays clear: no recursion here.
	resp.SetReply(req)
	resp.RecursionAvailable = false

	if len(req.Question) != 1 {
		resp.Rcode = mdns.RcodeFormatError
		return resp
	}
	q := req.Question[0]

	// EDNS (RFC 6891): one OPT at most, version 0.
	var opt *mdns.OPT
	for _, rr := range req.Extra {
		if o, ok := rr.(*mdns.OPT); ok {
			if opt != nil || o.Hdr.Name != "." {
				resp.Rcode = mdns.RcodeFormatError
				return resp
			}
			opt = o
		}
	}
	size := mdns.MinMsgSize
	var ecs *mdns.EDNS0_SUBNET
	if opt != nil {
		ro := &mdns.OPT{Hdr: mdns.RR_Header{Name: ".", Rrtype: mdns.TypeOPT}}
		ro.SetUDPSize(uint16(s.t.maxUDP))
		if opt.Do() {
			ro.SetDo() // RFC 3225: the DO bit is copied
		}
		resp.Extra = append(resp.Extra, ro)
		if opt.Version() != 0 {
			resp.Rcode = mdns.RcodeBadVers // needs the OPT, which carries the upper bits
			return resp
		}
		size = max(int(opt.UDPSize()), mdns.MinMsgSize)
		size = min(size, s.t.maxUDP)
		for _, o := range opt.Option {
			if e, ok := o.(*mdns.EDNS0_SUBNET); ok {
				if ecs != nil || e.SourceScope != 0 || !validECS(e) {
					resp.Rcode = mdns.RcodeFormatError // RFC 7871 section 7.1.2
					return resp
				}
				ecs = e
			}
		}
	}
	if !udp {
		size = mdns.MaxMsgSize
	}

	switch {
	case q.Qclass != mdns.ClassINET && q.Qclass != mdns.ClassANY:
		resp.Rcode = mdns.RcodeRefused
		return resp
	case q.Qtype == mdns.TypeAXFR || q.Qtype == mdns.TypeIXFR:
		resp.Rcode = mdns.RcodeRefused // zone transfers are not offered
		return resp
	case q.Qtype == mdns.TypeOPT || q.Qtype == mdns.TypeTSIG || q.Qtype == mdns.TypeTKEY ||
		q.Qtype == mdns.TypeMAILA || q.Qtype == mdns.TypeMAILB:
		resp.Rcode = mdns.RcodeNotImplemented
		return resp
	}

	qname := mdns.CanonicalName(q.Name)
	z := s.t.zoneOf(qname)
	if z == nil {
		// Not ours: an authoritative-only server refuses rather than
		// recursing, whatever RD says.
		resp.Rcode = mdns.RcodeRefused
		return resp
	}
	resp.Authoritative = true

	// Client address for geography: the ECS address when present.
	client := src
	if ecs != nil && ecs.SourceNetmask > 0 { // /0: the resolver opted out of ECS
		if a, ok := netip.AddrFromSlice(ecs.Address); ok {
			if p, err := a.Unmap().Prefix(int(ecs.SourceNetmask)); err == nil {
				client = p.Addr()
			}
		}
	}
	geoUsed := false

	name := qname
	owner := q.Name // the first answer's owner keeps the asker's case
	for hop := 0; ; hop++ {
		n := z.nodes[name]
		if n == nil {
			resp.Rcode = mdns.RcodeNameError
			resp.Ns = append(resp.Ns, s.negSOA(z))
			break
		}
		if cn := n.rrs[mdns.TypeCNAME]; len(cn) > 0 && q.Qtype != mdns.TypeCNAME {
			resp.Answer = append(resp.Answer, withOwner(cn[0], owner))
			target := mdns.CanonicalName(cn[0].(*mdns.CNAME).Target)
			if hop+1 >= maxChase || !mdns.IsSubDomain(z.origin, target) {
				break // resolvers follow the rest themselves
			}
			name, owner = target, cn[0].(*mdns.CNAME).Target
			continue
		}
		before := len(resp.Answer)
		switch {
		case q.Qtype == mdns.TypeANY:
			// RFC 8482: a minimal answer instead of every record set.
			resp.Answer = append(resp.Answer, &mdns.HINFO{
				Hdr: mdns.RR_Header{Name: owner, Rrtype: mdns.TypeHINFO, Class: mdns.ClassINET, Ttl: 3600},
				Cpu: "RFC8482",
			})
		case n.pool != nil && (q.Qtype == mdns.TypeA || q.Qtype == mdns.TypeAAAA || q.Qtype == mdns.TypeSRV):
			s.poolAnswer(resp, n.pool, q.Qtype, owner, client, h)
			geoUsed = len(n.pool.geo) > 0
		default:
			for _, rr := range n.rrs[q.Qtype] {
				resp.Answer = append(resp.Answer, withOwner(rr, owner))
			}
			if q.Qtype == mdns.TypeNS || q.Qtype == mdns.TypeMX || q.Qtype == mdns.TypeSRV {
				s.glue(resp, z, resp.Answer[before:])
			}
		}
		if len(resp.Answer) == before {
			// NODATA: the name exists without this type (RFC 2308).
			resp.Ns = append(resp.Ns, s.negSOA(z))
		}
		break
	}

	if ecs != nil && opt != nil {
		out := *ecs
		out.SourceScope = 0
		if geoUsed {
			out.SourceScope = ecs.SourceNetmask // the answer holds for the whole subnet asked about
		}
		ro := resp.Extra[0].(*mdns.OPT)
		ro.Option = append(ro.Option, &out)
	}
	if fit(resp, size) && h != nil {
		h.fitted = true
	}
	return resp
}

// validECS checks an EDNS Client Subnet option from a query (RFC 7871).
func validECS(e *mdns.EDNS0_SUBNET) bool {
	switch e.Family {
	case 0:
		return e.SourceNetmask == 0
	case 1:
		return e.SourceNetmask <= 32
	case 2:
		return e.SourceNetmask <= 128
	}
	return false
}

// fit makes resp fit in size bytes: additional records go first (their
// loss needs no TC, RFC 2181 section 9), then answers are cut and TC set so
// the client retries over TCP. It reports whether it changed resp.
func fit(resp *mdns.Msg, size int) bool {
	if resp.Len() <= size {
		return false
	}
	var opt mdns.RR
	for _, rr := range resp.Extra {
		if rr.Header().Rrtype == mdns.TypeOPT {
			opt = rr
		}
	}
	resp.Extra = resp.Extra[:0]
	if opt != nil {
		resp.Extra = append(resp.Extra, opt)
	}
	resp.Compress = true
	if resp.Len() <= size {
		return true
	}
	resp.Truncate(size)
	if resp.Truncated {
		// A partial RRset would mislead: send none, the client must retry.
		resp.Answer, resp.Ns = nil, nil
	}
	return true
}

// negSOA is the zone's SOA for a negative answer, with the negative TTL.
func (s *Server) negSOA(z *zone) mdns.RR {
	soa := *z.soa
	soa.Hdr.Ttl = z.negTTL
	return &soa
}

// withOwner returns rr with the given owner name (a shallow copy when the
// name differs only in case, so shared records are never modified).
func withOwner(rr mdns.RR, owner string) mdns.RR {
	if rr.Header().Name == owner {
		return rr
	}
	c := mdns.Copy(rr)
	c.Header().Name = owner
	return c
}

// glue adds the zone's A and AAAA records of in-zone targets named by rrs
// to the additional section.
func (s *Server) glue(resp *mdns.Msg, z *zone, rrs []mdns.RR) {
	for _, rr := range rrs {
		var target string
		switch r := rr.(type) {
		case *mdns.NS:
			target = r.Ns
		case *mdns.MX:
			target = r.Mx
		case *mdns.SRV:
			target = r.Target
		default:
			continue
		}
		if n := z.nodes[mdns.CanonicalName(target)]; n != nil {
			resp.Extra = append(resp.Extra, n.rrs[mdns.TypeA]...)
			resp.Extra = append(resp.Extra, n.rrs[mdns.TypeAAAA]...)
		}
	}
}

// poolAnswer adds the records of the sites chosen for client.
func (s *Server) poolAnswer(resp *mdns.Msg, p *pool, qtype uint16, owner string, client netip.Addr, h *hooks) {
	var buf [MaxAnswers]*site
	var sites []*site
	switch {
	case h != nil && h.probe:
		h.pool = p
		return
	case h != nil:
		h.pool = p
		sites = h.sel
	default:
		region := ""
		if len(p.geo) > 0 && client.IsValid() {
			region = s.t.regionOf(client)
		}
		sites, _ = p.selectSites(region, buf[:0])
	}
	hdr := func(ty uint16) mdns.RR_Header {
		return mdns.RR_Header{Name: owner, Rrtype: ty, Class: mdns.ClassINET, Ttl: p.ttl}
	}
	for _, st := range sites {
		switch qtype {
		case mdns.TypeA:
			for _, ip := range st.v4 {
				resp.Answer = append(resp.Answer, &mdns.A{Hdr: hdr(mdns.TypeA), A: ip})
			}
		case mdns.TypeAAAA:
			for _, ip := range st.v6 {
				resp.Answer = append(resp.Answer, &mdns.AAAA{Hdr: hdr(mdns.TypeAAAA), AAAA: ip})
			}
		case mdns.TypeSRV:
			if st.host == "" {
				continue
			}
			resp.Answer = append(resp.Answer, &mdns.SRV{Hdr: hdr(mdns.TypeSRV), Priority: 0,
				Weight: uint16(st.target.Weight()), Port: uint16(st.port), Target: st.host})
			gh := func(ty uint16) mdns.RR_Header {
				return mdns.RR_Header{Name: st.host, Rrtype: ty, Class: mdns.ClassINET, Ttl: p.ttl}
			}
			for _, ip := range st.v4 {
				resp.Extra = append(resp.Extra, &mdns.A{Hdr: gh(mdns.TypeA), A: ip})
			}
			for _, ip := range st.v6 {
				resp.Extra = append(resp.Extra, &mdns.AAAA{Hdr: gh(mdns.TypeAAAA), AAAA: ip})
			}
		}
	}
}
