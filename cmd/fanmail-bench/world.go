package main

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/emersion/go-smtp"

	"fanmail/internal/fakenet"
)

// deadHost is where a dead first MX points: nothing listens there, so a
// connection is refused at once, as from a host that is down.
const deadHost = "127.2.0.1"

// world is the loopback Internet the target delivers into: the sinks and
// the DNS server that names them.
type world struct {
	dns   *fakenet.DNS
	sinks []*fakenet.Sink
	holes []*fakenet.BlackHole
}

// sinkIP gives sink i its own loopback address, 127.1.x.y.
func sinkIP(i int) string { return fmt.Sprintf("127.1.%d.%d", i/250, i%250+1) }

// holeIP gives black hole i its own loopback address, 127.3.x.y.
func holeIP(i int) string { return fmt.Sprintf("127.3.%d.%d", i/250, i%250+1) }

// unknownUser is Postfix's reply to a recipient it has no mailbox for.
func unknownUser(rcpt string) *smtp.SMTPError {
	return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1},
		Message: "<" + rcpt + ">: Recipient address rejected: User unknown in virtual mailbox table"}
}

// startWorld starts o.sinks sinks on o.sinkPort and a DNS server with the
// plan's domains; every delivery is reported to col.
func startWorld(o *options, p *plan, col *collector) (*world, error) {
	w := &world{}
	sinkOpts := fakenet.SinkOptions{
		Hostname:      "sink.bench.test",
		DiscardBodies: true,
		MaxConns:      o.maxConns,
		RTT:           o.rtt,
		Timeout:       2 * time.Minute,
		OnRecord:      col.record,
		RcptHook: func(_, to string) error {
			if p.unknownUser(to, o) {
				if o.world == worldInternet {
					return unknownUser(to)
				}
				return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "No such user (bench)"}
			}
			if o.tempFail > 0 && rand.Float64() < o.tempFail {
				return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Try again later (bench)"}
			}
			return nil
		},
	}
	if o.dropShare > 0 {
		sinkOpts.Drop = func(fakenet.Delivery) bool { return rand.Float64() < o.dropShare }
	}
	if err := w.startSinks(o, p, sinkOpts); err != nil {
		w.close()
		return nil, err
	}
	d, err := fakenet.NewDNS(o.dnsAddr)
	if err != nil {
		w.close()
		return nil, fmt.Errorf("start DNS server (a port below 1024 needs root): %w", err)
	}
	w.dns = d
	// Refusing other names lets a system resolver list this server first
	// and still reach its usual one for everything else.
	d.SetZone("bench.test")
	const ttl = 3600
	for i := range w.sinks {
		d.SetA(fmt.Sprintf("mx%d.sinks%s", i, domainSuffix), ttl, sinkIP(i))
	}
	for i := range w.holes {
		d.SetA(fmt.Sprintf("mx%d.holes%s", i, domainSuffix), ttl, holeIP(i))
	}
	d.SetA("dead.sinks"+domainSuffix, ttl, deadHost)
	// The list domain exists too, for MTAs that check the sender's domain.
	d.SetMX(listDomain, ttl, fakenet.MX{Pref: 10, Host: "mx0.sinks" + domainSuffix})
	d.SetMX("bench.test", ttl, fakenet.MX{Pref: 10, Host: "mx0.sinks" + domainSuffix})
	holes := 0
	for _, dm := range p.domains {
		mx := fmt.Sprintf("mx%d.sinks%s", dm.sink, domainSuffix)
		switch dm.kind {
		case kindMX:
			d.SetMX(dm.name, ttl, fakenet.MX{Pref: 10, Host: mx})
		case kindImplicit:
			d.SetA(dm.name, ttl, sinkIP(dm.sink))
		case kindNullMX:
			d.SetNullMX(dm.name, ttl)
		case kindDeadMX:
			d.SetMX(dm.name, ttl, fakenet.MX{Pref: 10, Host: "dead.sinks" + domainSuffix}, fakenet.MX{Pref: 20, Host: mx})
		case kindBlackHole:
			d.SetMX(dm.name, ttl, fakenet.MX{Pref: 10, Host: fmt.Sprintf("mx%d.holes%s", holes, domainSuffix)})
			holes++
		}
	}
	return w, nil
}

// stats adds up the sinks' counters.
func (w *world) stats() fakenet.SinkStats {
	var t fakenet.SinkStats
	for _, s := range w.sinks {
		st := s.Stats()
		t.Connections += st.Connections
		t.Rejected += st.Rejected
		t.MaxConcurrentConns += st.MaxConcurrentConns
		t.Transactions += st.Transactions
		t.RcptAccepted += st.RcptAccepted
		t.RcptRejected += st.RcptRejected
		t.RecipientsDelivered += st.RecipientsDelivered
		t.Bytes += st.Bytes
		t.Duplicates += st.Duplicates
		t.Dropped += st.Dropped
	}
	return t
}

// startSinks starts the sinks on o.sinkPort: o.sinks alike in the plain
// world; in the Internet world one per domain with its profile, and a
// black hole for each black-hole domain.
func (w *world) startSinks(o *options, p *plan, base fakenet.SinkOptions) error {
	if o.world != worldInternet {
		if o.sinks < 1 || o.sinks > 250*250 {
			return fmt.Errorf("--sinks %d: want 1 to 62500", o.sinks)
		}
		for i := range o.sinks {
			so := base
			so.Addr = fmt.Sprintf("%s:%d", sinkIP(i), o.sinkPort)
			s, err := fakenet.NewSink(so)
			if err != nil {
				return fmt.Errorf("start sink %d of %d: %w", i+1, o.sinks, err)
			}
			w.sinks = append(w.sinks, s)
		}
		return nil
	}
	holes := 0
	for _, dm := range p.domains {
		if dm.kind == kindBlackHole {
			holes++
			continue
		}
		pr := dm.prof
		so := base
		so.Addr = fmt.Sprintf("%s:%d", sinkIP(dm.sink), o.sinkPort)
		so.RTT, so.GreetDelay, so.ReplyDelay = pr.rtt, pr.greet, pr.reply
		so.MaxConns, so.MaxConnsPerIP, so.MaxMsgsPerConn = 0, pr.maxConns, pr.maxMsgs
		so.MaxRcpts, so.Greylist = pr.maxRcpts, pr.greylist
		so.Timeout = max(so.Timeout, 2*pr.greet)
		s, err := fakenet.NewSink(so)
		if err != nil {
			return fmt.Errorf("start sink for %s: %w", dm.name, err)
		}
		w.sinks = append(w.sinks, s)
	}
	// Each black hole checks that a connect hangs, which takes a moment:
	// all at once.
	w.holes = make([]*fakenet.BlackHole, holes)
	errs := make([]error, holes)
	var wg sync.WaitGroup
	for i := range holes {
		wg.Go(func() {
			w.holes[i], errs[i] = fakenet.NewBlackHole(fmt.Sprintf("%s:%d", holeIP(i), o.sinkPort))
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (w *world) close() error {
	var errs []error
	for _, s := range w.sinks {
		errs = append(errs, s.Close())
	}
	for _, h := range w.holes {
		if h != nil {
			errs = append(errs, h.Close())
		}
	}
	if w.dns != nil {
		errs = append(errs, w.dns.Close())
	}
	return errors.Join(errs...)
}
