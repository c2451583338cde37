package webhook

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// ClientIP finds the address of the browser behind the reverse proxies this
// service trusts (CRMSYNC_TRUSTED_PROXIES), so that rate limits count visitors and
// not the load balancer, and the consent ledger records the visitor. Only a
// request that comes from a trusted proxy has its X-Forwarded-For read, from the
// right: the first address that is not itself a trusted proxy is the client's.
// Anything to the left of it was written by the client and is never used. A
// missing header, or an entry on the way that is not an IP address, leaves the
// proxy's own address. The RFC 7239 Forwarded header is not read.
//
// A nil or empty ClientIP trusts no forwarding header: the client is RemoteAddr.
type ClientIP struct {
	trusted []netip.Prefix
}

// NewClientIP parses a comma-separated list of IP addresses and CIDR prefixes,
// IPv4 or IPv6, such as "10.0.0.0/8,fd00::/8,127.0.0.1"; an empty list trusts no
// proxy.
func NewClientIP(proxies string) (*ClientIP, error) {
	c := &ClientIP{}
	if strings.TrimSpace(proxies) == "" {
		return c, nil
	}
	for entry := range strings.SplitSeq(proxies, ",") {
		entry = strings.TrimSpace(entry)
		p, ok := parseProxy(entry)
		if !ok {
			return nil, fmt.Errorf("parse trusted proxies: %q is not an IP address or CIDR prefix", entry)
		}
		c.trusted = append(c.trusted, p)
	}
	return c, nil
}

// parseProxy reads one trusted address or prefix; an IPv4-mapped IPv6 one is
// taken as the IPv4 it maps, which is how addresses are compared.
func parseProxy(s string) (netip.Prefix, bool) {
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return netip.Prefix{}, false
		}
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), true
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, false
	}
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p.Masked(), true
}

// Of is the address r's client called from, as text (an IPv4 address, or an
// IPv6 one without brackets).
func (c *ClientIP) Of(r *http.Request) string {
	remote := clientIP(r)
	if c == nil || len(c.trusted) == 0 {
		return remote
	}
	hop, ok := parseHop(remote)
	if !ok || !c.trusts(hop) {
		return remote
	}
	values := r.Header.Values("X-Forwarded-For")
	if len(values) == 0 {
		return remote
	}
	// Several header lines are one list, in order. Each proxy appended the
	// address it was called from: walk back from the nearest.
	rest := strings.Join(values, ",")
	for {
		i := strings.LastIndexByte(rest, ',')
		a, ok := parseHop(strings.TrimSpace(rest[i+1:]))
		if !ok {
			return remote
		}
		hop = a
		if !c.trusts(hop) || i < 0 {
			// The first untrusted hop; or, when all are trusted, the farthest.
			return hop.String()
		}
		rest = rest[:i]
	}
}

func (c *ClientIP) trusts(a netip.Addr) bool {
	for _, p := range c.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// parseHop reads an address of RemoteAddr or X-Forwarded-For, with or without a
// port (some proxies add one), as it is compared: an IPv4-mapped address as its
// IPv4, without an IPv6 zone.
func parseHop(s string) (netip.Addr, bool) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		ap, perr := netip.ParseAddrPort(s)
		if perr != nil {
			return netip.Addr{}, false
		}
		a = ap.Addr()
	}
	return a.Unmap().WithZone(""), true
}

// clientIP is the address the call came from, without trusting any forwarding
// header (anyone can set them): RemoteAddr's host.
func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
