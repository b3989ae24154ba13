package config

import (
	"fmt"
	"net/netip"
	"strings"

	"fanmail/delivery"
)

// SourceAddr is one of a queue group's source_addresses: the address a
// connection leaves from and the name it gives in EHLO, which should be
// what the address's reverse DNS says (default: hostname).
type SourceAddr struct {
	Address string `toml:"address"`
	HELO    string `toml:"helo"`
}

// validateSources checks every group's source addresses.
func (c *Config) validateSources(bad func(key, format string, args ...any)) {
	for i, g := range c.Queue.Groups {
		key := fmt.Sprintf("queue.group[%d]", i)
		if g.Name != "" {
			key = "queue.group " + g.Name
		}
		if g.SourceMaxConnections < 0 {
			bad(key+".source_max_connections", "must be 0 (no cap of its own) or more")
		}
		if g.SourceMaxConnections > 0 && len(g.SourceAddresses) == 0 {
			bad(key+".source_max_connections", "needs source_addresses")
		}
		seen := map[netip.Addr]bool{}
		for _, a := range g.SourceAddresses {
			ip, err := netip.ParseAddr(a.Address)
			switch {
			case err != nil:
				bad(key+".source_addresses", "%q is not an IP address", a.Address)
			case ip.IsUnspecified() || ip.IsMulticast():
				bad(key+".source_addresses", "%s is not a unicast address", a.Address)
			case seen[ip]:
				bad(key+".source_addresses", "%s is listed twice", a.Address)
			case strings.ContainsAny(a.HELO, " \t\r\n"):
				bad(key+".source_addresses", "helo %q of %s must be one word", a.HELO, a.Address)
			}
			seen[ip] = true
		}
	}
}

// sourcePools maps each group's source addresses onto delivery's pools.
func (c *Config) sourcePools() map[string]delivery.SourcePool {
	var pools map[string]delivery.SourcePool
	for _, g := range c.Queue.Groups {
		if len(g.SourceAddresses) == 0 {
			continue
		}
		p := delivery.SourcePool{MaxConnsPerSource: g.SourceMaxConnections}
		for _, a := range g.SourceAddresses {
			ip, _ := netip.ParseAddr(a.Address)
			p.Addrs = append(p.Addrs, delivery.SourceAddr{IP: ip, HELO: a.HELO})
		}
		if pools == nil {
			pools = map[string]delivery.SourcePool{}
		}
		pools[g.Name] = p
	}
	return pools
}
