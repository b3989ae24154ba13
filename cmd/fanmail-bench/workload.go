package main

import (
	"fmt"
	"hash/fnv"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// The generated world: domains d0.bench.test … under one reserved TLD, so
// nothing the tool names can ever resolve outside it.
const (
	domainSuffix = ".bench.test"
	listDomain   = "lists.bench.test"
	posterAddr   = "poster@bench.test"
	ownerAddr    = "owner@bench.test"
)

// domainKind says how a domain's mail is routed in the tool's DNS.
type domainKind int

const (
	kindMX        domainKind = iota // one MX pointing at a sink
	kindImplicit                    // no MX; the domain's A record is the sink (RFC 5321 §5.1)
	kindNullMX                      // "MX 0 ." (RFC 7505): accepts no mail
	kindDeadMX                      // first MX refuses connections, second is the sink
	kindBlackHole                   // the MX never answers a SYN (Internet world)
)

func (k domainKind) String() string {
	return [...]string{"mx", "implicit", "null-mx", "dead-first-mx", "black-hole"}[k]
}

type domain struct {
	name string
	kind domainKind
	sink int     // index of the sink its mail reaches; -1 for a black hole
	prof profile // Internet world: its class and receiver behaviour
}

// list is one list (or alias) the target must expand.
type list struct {
	addr    string // list@lists.bench.test
	members []string
}

// post is one message to inject: to a list, or straight to one recipient.
type post struct {
	id     string   // Message-ID, unique per run: ties deliveries to it
	rcpt   string   // RCPT TO address
	expect []string // final recipients it should reach
}

// plan is everything a run sends and expects.
type plan struct {
	domains []domain
	lists   []list
	posts   []post
	unknown map[string]bool // Internet world: recipients answered 550 5.1.1
}

// domainOf returns the domain part of addr.
func domainOf(addr string) string { return addr[strings.LastIndexByte(addr, '@')+1:] }

// makeDomains names n domains; the last ones get the special kinds. In
// the Internet world each domain has its own sink and profile instead.
func makeDomains(o *options) ([]domain, error) {
	if o.world == worldInternet {
		ds := make([]domain, o.domains)
		sinks := 0
		for i, p := range internetProfiles(o.domains, &o.net) {
			ds[i] = domain{name: fmt.Sprintf("d%d%s", i, domainSuffix), sink: -1, kind: kindBlackHole, prof: p}
			if p.class != classBlackhole {
				ds[i].kind, ds[i].sink = kindMX, sinks
				sinks++
			}
		}
		return ds, nil
	}
	special := o.implicitMX + o.nullMX + o.deadMX
	if special > o.domains {
		return nil, fmt.Errorf("--implicit-mx + --null-mx + --dead-mx = %d is more than --domains %d", special, o.domains)
	}
	ds := make([]domain, o.domains)
	for i := range ds {
		ds[i] = domain{name: fmt.Sprintf("d%d%s", i, domainSuffix), sink: i % o.sinks}
	}
	i := o.domains - special
	for _, k := range []struct {
		n    int
		kind domainKind
	}{{o.implicitMX, kindImplicit}, {o.nullMX, kindNullMX}, {o.deadMX, kindDeadMX}} {
		for range k.n {
			ds[i].kind = k.kind
			i++
		}
	}
	return ds, nil
}

// spread returns how many of n members each of d domains gets: the same
// for "uniform"; for "skewed", Zipf's law with s=1 like real lists (the
// first domain about 13% of 1,000, a long tail of domains with a handful).
func spread(n, d int, dist string) ([]int, error) {
	counts := make([]int, d)
	switch dist {
	case "uniform":
		for i := range counts {
			counts[i] = n / d
			if i < n%d {
				counts[i]++
			}
		}
	case "skewed":
		w := make([]float64, d+1) // cumulative weights
		for i := 1; i <= d; i++ {
			w[i] = w[i-1] + 1/float64(i)
		}
		// Rounding the cumulative share keeps the sum exactly n.
		for i := range counts {
			counts[i] = int(math.Round(float64(n)*w[i+1]/w[d])) - int(math.Round(float64(n)*w[i]/w[d]))
		}
	default:
		return nil, fmt.Errorf("--dist %q: want uniform or skewed", dist)
	}
	return counts, nil
}

// addresses returns n unique member addresses spread over the domains.
func addresses(n int, ds []domain, o *options) ([]string, error) {
	var counts []int
	if o.world == worldInternet {
		counts = internetSpread(n, len(ds), o.net.giants, o.net.zipf)
	} else {
		var err error
		if counts, err = spread(n, len(ds), o.dist); err != nil {
			return nil, err
		}
	}
	out := make([]string, 0, n)
	for i, c := range counts {
		for range c {
			out = append(out, fmt.Sprintf("u%d@%s", len(out), ds[i].name))
		}
	}
	return out, nil
}

// makePlan builds the lists and posts of the workload. runID keeps
// Message-IDs unique across runs, so mail a long-lived target still
// holds from an earlier run is told apart (counted as stray).
func makePlan(o *options, runID string) (*plan, error) {
	ds, err := makeDomains(o)
	if err != nil {
		return nil, err
	}
	p := &plan{domains: ds}
	msgID := func(i int) string { return fmt.Sprintf("<%s.%d@bench.test>", runID, i) }
	switch o.workload {
	case "fanout", "mixed":
		n := 1
		if o.workload == "mixed" {
			n = o.lists
		}
		if n < 1 || n > o.members {
			return nil, fmt.Errorf("--lists %d: want between 1 and --members", n)
		}
		addrs, err := addresses(o.members, ds, o)
		if err != nil {
			return nil, err
		}
		p.pickUnknown(o, addrs)
		p.lists = make([]list, n)
		for i := range p.lists {
			p.lists[i].addr = listAddr(o.workload, i)
		}
		for j, a := range addrs {
			p.lists[j%n].members = append(p.lists[j%n].members, a)
		}
		posts := o.posts
		if o.workload == "fanout" {
			posts = 1
		}
		// Interleave the lists so concurrent clients post to all of them.
		for r := range posts {
			for i := range p.lists {
				p.posts = append(p.posts, post{id: msgID(len(p.posts)), rcpt: p.lists[i].addr, expect: p.lists[i].members})
				_ = r
			}
		}
	case "mass":
		// fanmail never relays, so each one-recipient post goes to a
		// one-member list; --direct sends to the member itself instead,
		// for MTAs that relay from loopback. Either way the recipients
		// are the same --lists addresses.
		if o.lists < 1 {
			return nil, fmt.Errorf("--lists %d: want at least 1", o.lists)
		}
		addrs, err := addresses(o.lists, ds, o)
		if err != nil {
			return nil, err
		}
		p.pickUnknown(o, addrs)
		p.lists = make([]list, len(addrs))
		for i, a := range addrs {
			p.lists[i] = list{addr: listAddr("mass", i), members: []string{a}}
		}
		for i := range o.messages {
			l := p.lists[i%len(p.lists)]
			rcpt := l.addr
			if o.direct {
				rcpt = l.members[0]
			}
			p.posts = append(p.posts, post{id: msgID(i), rcpt: rcpt, expect: l.members})
		}
	default:
		return nil, fmt.Errorf("unknown workload %q: want fanout, mass or mixed", o.workload)
	}
	return p, nil
}

func listAddr(workload string, i int) string {
	if workload == "fanout" {
		return "bench@" + listDomain
	}
	return fmt.Sprintf("%s%d@%s", workload, i, listDomain)
}

// pickUnknown chooses the Internet world's 550 5.1.1 recipients.
func (p *plan) pickUnknown(o *options, addrs []string) {
	if o.world == worldInternet {
		p.unknown = pickUnknown(addrs, o.permFail, o.net.seed)
	}
}

// unknownUser reports whether the sinks answer rcpt 550 5.1.1.
func (p *plan) unknownUser(rcpt string, o *options) bool {
	if o.world == worldInternet {
		return p.unknown[rcpt]
	}
	return permFails(rcpt, o.permFail)
}

// permFails reports whether the sinks answer rcpt with 5xx in the plain
// world: decided by a hash, not at random, so the expected count is
// known and a retry gets the same answer.
func permFails(rcpt string, share float64) bool {
	if share <= 0 {
		return false
	}
	h := fnv.New32a()
	h.Write([]byte(rcpt))
	return float64(h.Sum32()%100000) < share*100000
}

// expected reports whether rcpt should end up delivered.
func (p *plan) expected(rcpt string, kinds map[string]domainKind, o *options) bool {
	k := kinds[domainOf(rcpt)]
	return k != kindNullMX && k != kindBlackHole && !p.unknownUser(rcpt, o)
}

// message renders post i as about size bytes with the headers a real post
// carries; the body is plain text lines.
func message(p post, to string, size int, now time.Time) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "Received: from client.bench.test (localhost [127.0.0.1])\r\n\tby bench.test with ESMTP; %s\r\n", now.Format(time.RFC1123Z))
	fmt.Fprintf(&b, "From: Bench Poster <%s>\r\n", posterAddr)
	fmt.Fprintf(&b, "To: <%s>\r\n", to)
	fmt.Fprintf(&b, "Subject: fanmail-bench post %s\r\n", strings.Trim(p.id, "<>"))
	fmt.Fprintf(&b, "Date: %s\r\n", now.Format(time.RFC1123Z))
	fmt.Fprintf(&b, "Message-ID: %s\r\n", p.id)
	b.WriteString("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n")
	const line = "The quick brown fox jumps over the lazy dog; pack my box with five dozen.\r\n"
	for b.Len()+len(line) <= size {
		b.WriteString(line)
	}
	if b.Len() < size {
		b.WriteString(strings.Repeat("x", max(0, size-b.Len()-2)) + "\r\n")
	}
	return []byte(b.String())
}

// writeAliases writes an aliases(5) file for an MTA under test: each list
// an :include: of a members file beside it, with an owner- alias so
// bounces go to the list owner (sendmail's and Postfix's convention).
func writeAliases(path string, lists []list) error {
	dir := filepath.Dir(path)
	var b strings.Builder
	b.WriteString("# Written by fanmail-bench; run newaliases (or postalias) after each change.\n")
	for _, l := range lists {
		local := l.addr[:strings.IndexByte(l.addr, '@')]
		inc := filepath.Join(dir, local+".members")
		if err := os.WriteFile(inc, []byte(strings.Join(l.members, "\n")+"\n"), 0o644); err != nil {
			return fmt.Errorf("write members of %s: %w", l.addr, err)
		}
		fmt.Fprintf(&b, "%s: :include:%s\nowner-%s: postmaster\n", local, inc, local)
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("write aliases: %w", err)
	}
	return nil
}
