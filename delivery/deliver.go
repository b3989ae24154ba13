package delivery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"fanmail/envelope"
	"fanmail/resolver"
)

// Deliver makes one attempt at env and returns exactly one Result per
// env.Recipients entry, in the same order. It never returns early without
// a verdict: anything that is not a definite answer is Deferred.
func (a *Agent) Deliver(ctx context.Context, env envelope.Request) []envelope.Result {
	env.Domain = strings.ToLower(env.Domain)
	results := make([]envelope.Result, len(env.Recipients))
	for i, r := range env.Recipients {
		results[i].Recipient = r
	}
	if len(results) == 0 {
		return results
	}
	if env.IsLocal() {
		return a.deliverLocal(ctx, env)
	}
	env.SMTPUTF8 = needsSMTPUTF8(&env)
	if a.relayOnly(env) {
		a.deliverRelay(ctx, env, results) // fallback.go
	} else {
		t := &txn{a: a, env: env, results: results}
		t.run(ctx)
		if a.cfg.FallbackRelay != "" {
			a.fallback(ctx, env, results)
		}
	}
	// One line per recipient, as Postfix logs; the envelope's own fields
	// are formatted once for all of them (a fan-out logs 100,000 lines).
	log := a.log.With(slog.String("qid", env.QueueID))
	for _, r := range results {
		log.LogAttrs(ctx, slog.LevelInfo, "delivery",
			slog.String("rcpt", r.Recipient),
			slog.String("domain", env.Domain),
			slog.String("relay", r.Relay),
			slog.Int("code", r.Code),
			slog.String("status", r.Status.String()),
			slog.String("reply", strings.TrimSpace(r.Enhanced+" "+r.Text)),
		)
	}
	return results
}

// fallback sends the recipients every MX deferred to the fallback relay
// and takes its verdicts. Recipients deferred because the destination
// was busy or suspended wait for their own MX instead.
func (a *Agent) fallback(ctx context.Context, env envelope.Request, results []envelope.Result) {
	var idx []int
	for i, r := range results {
		if a.handOff(r) {
			idx = append(idx, i)
		}
	}
	if len(idx) == 0 || ctx.Err() != nil {
		return
	}
	fe := env.Only(idx)
	ft := &txn{a: a, env: fe, results: make([]envelope.Result, len(idx))}
	for k := range ft.results {
		ft.results[k].Recipient = fe.Recipients[k]
	}
	ft.runRoute(ctx, a.cfg.FallbackRelay)
	for k, i := range idx {
		results[i] = ft.results[k]
		results[i].Text = "via fallback relay: " + results[i].Text
	}
}

// Busy reports, without waiting or querying DNS, whether a Deliver to
// domain now would find its MX group suspended or out of connection
// slots. A domain whose MX is not cached is never busy. The queue may use
// it to pick other work first; Deliver itself also defers promptly (4.4.5
// with a RetryAfter) rather than parking a runner.
func (a *Agent) Busy(domain string) bool {
	d := a.knownDest(strings.ToLower(domain))
	return d != nil && a.pool.busy(d)
}

// localSlots is how many local deliveries (|program, /file) run at once.
const localSlots = 64

// Slots tells the queue, without waiting or querying DNS, which
// destination domain's mail goes to (its MX group or route, or the
// domain itself while its MX is not cached) and how many deliveries to
// it are worth having in progress at once: one while the group is new,
// suspended, or has not yet greeted us, then its window, and twice the
// window once a session has carried a transaction, so a connection
// coming free finds the next delivery waiting for it. The queue keeps a
// domain's other envelopes aside until one of those finishes or
// SlotsChanged fires, so a dead host or a tarpit holds one of its
// runners, and a destination at its limit only what it can use.
func (a *Agent) Slots(domain string) (dest string, n int) {
	domain = strings.ToLower(domain)
	var key string
	if domain == envelope.LocalDomain {
		return domain, localSlots
	} else if hp, ok := a.cfg.Routes[domain]; ok {
		key = routeKey(hp)
	} else if hosts, ok := a.res.CachedMX(domain); ok {
		key = groupKey(hostNames(hosts))
	} else {
		return "domain:" + domain, 1
	}
	return key, a.pool.slots(key)
}

// SlotsChanged returns a channel that is closed when some destination's
// Slots next grow: a server of a new destination greeted us, or a
// window grew. The queue then looks again at the envelopes it set aside.
func (a *Agent) SlotsChanged() <-chan struct{} { return a.pool.slotsChanged() }

// Destination returns the scheduling state of domain's MX group, if the
// group exists and its MX answer is cached.
func (a *Agent) Destination(domain string) (DestinationState, bool) {
	d := a.knownDest(strings.ToLower(domain))
	if d == nil {
		return DestinationState{}, false
	}
	return a.pool.state(d), true
}

func (a *Agent) knownDest(domain string) *destination {
	var key string
	if hp, ok := a.cfg.Routes[domain]; ok {
		key = routeKey(hp)
	} else {
		hosts, ok := a.res.CachedMX(domain)
		if !ok {
			return nil
		}
		key = groupKey(hostNames(hosts))
	}
	a.pool.mu.Lock()
	defer a.pool.mu.Unlock()
	return a.pool.dests[key]
}

func routeKey(hp string) string { return "route:" + hp }

// groupKey names an MX group: the sorted set of its MX host names.
func groupKey(hosts []string) string {
	s := slices.Clone(hosts)
	slices.Sort(s)
	return strings.Join(slices.Compact(s), ",")
}

func hostNames(mxs []resolver.MXHost) []string {
	out := make([]string, len(mxs))
	for i, m := range mxs {
		out[i] = m.Host
	}
	return out
}

// txn is one Deliver call's state.
type txn struct {
	a       *Agent
	env     envelope.Request
	results []envelope.Result
	hosts   []resolver.MXHost // MX hosts in preference order, or the route host
	route   string            // host:port of a static route
	dest    *destination
	lim     limits
	session bool   // a session got as far as a transaction
	ruled   bool   // a reply rule has acted for this delivery
	last421 *Error // the last 421 that left recipients undecided
	told    []bool // recipients reported to env.Progress
	// member is the sender and header of the personalized transaction
	// about to be sent (personal.go); nil when the envelope is one copy.
	member *envelope.MemberCopy
	// dot holds the recipients of a personalized transaction whose body
	// and final dot are sent and whose reply is read with the next
	// member's commands (personal.go); dotConn is their connection.
	dot     []int
	dotConn *conn
}

// progress reports to env.Progress the recipients of idx that are now
// final and were not reported before.
func (t *txn) progress(idx []int) {
	if t.env.Progress == nil {
		return
	}
	if t.told == nil {
		t.told = make([]bool, len(t.results))
	}
	var done []int
	var res []envelope.Result
	for _, i := range idx {
		if st := t.results[i].Status; !t.told[i] && (st == envelope.Delivered || st == envelope.Failed) {
			t.told[i] = true
			done = append(done, i)
			res = append(res, t.results[i])
		}
	}
	if len(done) > 0 {
		t.env.Progress(done, res)
	}
}

// maxFruitless bounds the connections and transactions one delivery
// spends without deciding anyone (a stale cached connection, a 421)
// before it defers what is left.
const maxFruitless = 3

// pending reports whether recipient i still awaits a verdict.
func (t *txn) pending(i int) bool { return t.results[i].Status == 0 }

func (t *txn) anyPending(idx []int) bool {
	return slices.ContainsFunc(idx, t.pending)
}

func (t *txn) set(i int, st envelope.Status, code int, enhanced, text, relay string) {
	r := &t.results[i]
	r.Status, r.Code, r.Enhanced, r.Text, r.Relay = st, code, enhanced, text, relay
}

func (t *txn) setErr(i int, e *Error) {
	r := &t.results[i]
	r.Status, r.Reply, r.Relay = e.status(), e.reply(), e.Relay
}

// settleIdx gives every pending recipient in idx the verdict e.
func (t *txn) settleIdx(idx []int, e *Error) {
	for _, i := range idx {
		if t.pending(i) {
			t.setErr(i, e)
		}
	}
}

// settle gives every recipient still pending the verdict e.
func (t *txn) settle(e *Error) {
	for i := range t.results {
		if t.pending(i) {
			t.setErr(i, e)
		}
	}
}

func (t *txn) run(ctx context.Context) {
	env := t.env
	switch {
	case t.a.closed.Load():
		t.settle(localError(false, "4.3.2", "", "", nil, "delivery agent is shut down"))
		return
	case env.Domain == "" || env.Open == nil:
		t.settle(localError(false, "4.3.0", "", "", nil, "malformed envelope: no domain or no message"))
		return
	case strings.ContainsAny(env.Sender, "\r\n<>"):
		t.settle(localError(true, "5.1.7", "", "", nil, "bad sender address syntax %q", env.Sender))
		return
	}
	for i, r := range env.Recipients {
		if r == "" || strings.ContainsAny(r, "\r\n<>") {
			t.setErr(i, localError(true, "5.1.3", "", "", nil, "bad recipient address syntax %q", r))
		}
	}

	if hp, ok := t.a.cfg.Routes[env.Domain]; ok {
		t.runRoute(ctx, hp)
		return
	}
	hosts, err := lookup(ctx, t.a, func() ([]resolver.MXHost, error) { return t.a.res.LookupMX(ctx, env.Domain) })
	switch {
	case errors.Is(err, resolver.ErrNullMX):
		t.settle(localError(true, "5.1.10", "", "", err, "domain %s does not accept mail (null MX)", env.Domain))
		return
	case errors.Is(err, resolver.ErrNXDomain):
		t.settle(localError(true, "5.1.2", "", "", err, "domain %s not found (NXDOMAIN)", env.Domain))
		return
	case err != nil:
		t.settle(localError(false, "4.4.3", "", "", err, "DNS lookup failed: %v", err))
		return
	}
	t.hosts = hosts
	t.deliverTo(ctx, groupKey(hostNames(hosts)))
}

// runRoute delivers through a static "host:port" instead of the MX.
func (t *txn) runRoute(ctx context.Context, hp string) {
	host, _, _ := net.SplitHostPort(hp)
	t.route, t.hosts = hp, []resolver.MXHost{{Host: host}}
	t.deliverTo(ctx, routeKey(hp))
}

// deliverTo runs the transactions against the destination named key,
// within its limits, and feeds the outcome back to its concurrency.
func (t *txn) deliverTo(ctx context.Context, key string) {
	t.lim = t.a.policy(t.env.Domain, hostNames(t.hosts))
	t.dest = t.a.pool.dest(key, t.lim)
	connErr := t.deliverAll(ctx)
	t.feedback(connErr)
}

// deliverAll runs as many transactions as the recipients-per-transaction
// limit needs, on one connection while it lasts. A 421 or a stale cached
// connection leaves its recipients undecided and they are tried again at
// once, on another connection of the group (waiting for one to come free
// when the group is at its limit), at most maxFruitless times. It returns
// the error that stopped it from getting a connection, if any.
func (t *txn) deliverAll(ctx context.Context) *Error {
	var c *conn
	defer func() {
		if c != nil {
			t.finishDot()
			t.a.pool.release(t.dest, c)
		}
	}()
	fruitless := 0
	for {
		txnsPerConn, rcptsPerTxn := t.a.pool.limitsOf(t.dest)
		if t.personal() {
			rcptsPerTxn = 1
		}
		chunk := t.nextChunk(rcptsPerTxn)
		if len(chunk) == 0 {
			return nil
		}
		if t.personal() && !t.personalize(chunk[0]) {
			continue
		}
		if c == nil {
			var err *Error
			if c, err = t.connect(ctx); err != nil {
				if t.retryConnect(err) && fruitless < maxFruitless {
					fruitless++
					continue
				}
				t.settle(err)
				return err
			}
		}
		if err := t.a.pool.rateWait(ctx, t.dest); err != nil {
			t.settleIdx(chunk, localError(false, "4.4.7", "", "", err, "delivery interrupted: %v", err))
			continue
		}
		nc := c.nc
		stop := context.AfterFunc(ctx, func() { nc.Close() })
		out := c.send(t, chunk, c.txns > 0)
		for _, i := range chunk {
			if t.results[i].Relay == c.relay {
				t.results[i].Host = c.host
			}
		}
		if !stop() {
			// The socket was closed under the transaction: blame the
			// deadline, not the server.
			c.broken = true
			out = sentDone
			e := localError(false, "4.4.7", "", c.relay, ctx.Err(), "delivery interrupted with %s: %v", c.relay, ctx.Err())
			for _, i := range chunk {
				if r := t.results[i]; r.Status != envelope.Delivered && r.Code == 0 {
					t.results[i].Status = 0
					t.setErr(i, e)
				}
			}
		}
		if out == sentDone {
			t.session = true
		}
		t.progress(chunk)
		if c.broken || c.txns >= txnsPerConn {
			t.finishDot()
			t.a.pool.release(t.dest, c)
			c = nil
		}
		if out == sentDone {
			continue
		}
		if out == sentThrottled && t.throttled() {
			t.settleIdx(chunk, t.last421)
			continue
		}
		if fruitless++; fruitless > maxFruitless {
			e := t.last421
			if out == sentStale || e == nil {
				e = localError(false, "4.4.2", "RSET", "", nil, "cached connections to %s keep failing", t.dest.key)
			}
			t.settleIdx(chunk, e)
		}
	}
}

// nextChunk returns the first n recipients still undecided.
func (t *txn) nextChunk(n int) []int {
	var chunk []int
	for i := range t.results {
		if t.pending(i) && !slices.Contains(t.dot, i) {
			if chunk = append(chunk, i); len(chunk) == n {
				break
			}
		}
	}
	return chunk
}

// retryConnect reports whether a failure to get a connection is worth
// another try within this delivery: a 421 at the greeting, which either
// taught the group its limit on sessions (another connection of ours
// will come free) or paused it briefly.
func (t *txn) retryConnect(e *Error) bool {
	return e.Code == 421 && e.Command == "greeting" && t.a.pool.state(t.dest).SuspendedUntil.IsZero()
}

// throttled pauses the group's new connections after a 421 that taught
// no limit, and lets the reply rules act on it once. It reports whether
// a rule suspended the group, which ends the retries.
func (t *txn) throttled() bool {
	t.a.pool.throttled(t.dest)
	t.apply(t.last421)
	return !t.a.pool.state(t.dest).SuspendedUntil.IsZero()
}

// connect takes a cached connection to the destination or dials one,
// trying MX hosts in preference order (RFC 5321 §5.1).
func (t *txn) connect(ctx context.Context) (*conn, *Error) {
	for {
		c, err := t.a.pool.acquire(ctx, t.dest, t.a.sources.poolName(t.env.Group))
		switch {
		case errors.Is(err, errBusy):
			return nil, &Error{Enhanced: "4.4.5", Line: fmt.Sprintf("%s: %v", t.dest.key, err), Err: err}
		case errors.Is(err, errSuspended):
			return nil, &Error{Enhanced: "4.4.1", Line: fmt.Sprintf("%s: %v", t.dest.key, err), Err: err}
		case err != nil:
			return nil, localError(false, "4.4.7", "", "", err, "delivery interrupted: %v", err)
		case c != nil && t.lim.tls == TLSRequired && !c.tls:
			c.broken = true // cached in plain text: not good enough here
			t.a.pool.release(t.dest, c)
			continue
		case c != nil:
			t.a.counters.connsReused.Add(1)
			return c, nil
		}
		c, de := t.dialHosts(ctx)
		if de != nil {
			t.a.pool.dialed(t.dest)
		}
		return c, de
	}
}

// dialHosts resolves MX hosts one at a time, in order, so a working
// primary costs no lookups for the backups. A refused connection, a
// greeting or EHLO that is not 2xx moves on to the next address. Only the
// first maxAddrs addresses are tried.
func (t *txn) dialHosts(ctx context.Context) (*conn, *Error) {
	var last, busy421 *Error
	tried, silent := 0, 0
	for _, mx := range t.hosts {
		var addrs []string
		if t.route != "" {
			addrs = []string{t.route}
		} else {
			ips, err := lookup(ctx, t.a, func() ([]netip.Addr, error) { return t.a.res.LookupA(ctx, mx.Host) })
			switch {
			case err == nil:
			case mx.Implicit && (errors.Is(err, resolver.ErrNoAddress) || errors.Is(err, resolver.ErrNXDomain)):
				return nil, localError(true, "5.4.4", "", "", err, "domain %s has no MX and no address records", t.env.Domain)
			case errors.Is(err, resolver.ErrNoAddress) || errors.Is(err, resolver.ErrNXDomain):
				last = localError(false, "4.4.4", "", "", err, "MX host %s has no address: %v", mx.Host, err)
				continue
			default:
				last = localError(false, "4.4.3", "", "", err, "DNS lookup failed: %v", err)
				continue
			}
			for _, ip := range ips {
				addrs = append(addrs, netip.AddrPortFrom(ip, uint16(t.a.cfg.Port)).String())
			}
		}
		for _, addr := range addrs {
			if tried == maxAddrs || ctx.Err() != nil {
				break
			}
			tried++
			c, err := t.a.dial(ctx, t.dest, t.env.Group, mx.Host, addr, t.lim.tls)
			if err == nil {
				return c, nil
			}
			last = asError(err, &conn{relay: addr})
			last.Host = mx.Host
			switch {
			case errors.Is(err, errBusy):
				return nil, last // no source address free: nothing was tried
			case errors.Is(err, errNoAnswer):
				silent++
			case last.Code == 421 && last.Command == "greeting":
				busy421 = last
			default:
				t.apply(last)
			}
		}
	}
	switch {
	case tried > 0 && silent == tried:
		// Every address silent, not refusing: the group is dead for now,
		// and whoever waits for it hears so at once.
		t.a.pool.dead(t.dest, last.Error())
	case busy421 != nil:
		// Too many sessions: with others of ours open the group learns
		// its limit and we wait for one of them; else it is shedding
		// load, and its new connections pause.
		if !t.a.pool.tooManyConns(ctx, t.dest) {
			t.last421 = busy421
			t.throttled()
		}
		last = busy421
	}
	return nil, t.giveUp(ctx, last)
}

// giveUp is the error everyone still pending gets when no host took the
// session. Its code may be a 5xx greeting: the verdict is still Deferred,
// Code and Enhanced only report what the host said.
func (t *txn) giveUp(ctx context.Context, last *Error) *Error {
	switch {
	case ctx.Err() != nil && (last == nil || last.Code == 0):
		return localError(false, "4.4.7", "", "", ctx.Err(), "delivery interrupted: %v", ctx.Err())
	case last != nil:
		e := *last
		e.Permanent = false
		return &e
	}
	return localError(false, "4.4.4", "", "", nil, "no MX host of %s could be tried", t.env.Domain)
}

// feedback tells the pool how the destination did, applies reply rules
// to the replies recipients got, and marks deferrals that the queue may
// retry sooner than its normal backoff: busy, suspended, throttled and
// greylisted recipients.
func (t *txn) feedback(connErr *Error) {
	p := t.a.pool
	t.greylisting()
	switch {
	case connErr == nil || t.session:
		p.feedback(t.dest, true, "")
	case errors.Is(connErr, errBusy):
		t.retryAfter(max(busyRetry, p.pauseLeft(t.dest)), false)
		return
	case errors.Is(connErr, errSuspended):
		if s := p.state(t.dest); !s.SuspendedUntil.IsZero() {
			t.retryAfter(time.Until(s.SuspendedUntil), false)
		}
		return
	case connErr.Enhanced == "4.4.7" || connErr.Permanent:
		return // our own deadline, or a DNS verdict: says nothing of the hosts
	case errors.Is(connErr, errNoAnswer):
		return // the group is suspended already
	case connErr.Code == 421:
		// Refused at the greeting each time: try again within seconds.
		t.retryAfter(max(p.cfg.ThrottlePause, p.pauseLeft(t.dest)), true)
		return
	default:
		p.feedback(t.dest, false, connErr.Error())
	}
	for _, r := range t.results {
		if t.ruled {
			break
		}
		if r.Code >= 400 && t.apply(&Error{Code: r.Code, Enhanced: r.Enhanced, Line: r.Text}) {
			break
		}
	}
	if t.last421 != nil {
		// Recipients a 421 left deferred after the retries: seconds, not
		// the queue's minutes.
		t.retryAfter(max(p.cfg.ThrottlePause, p.pauseLeft(t.dest)), true)
	}
}

// greylisting gives greylisted recipients their retry time and teaches
// the group's window from greylisted recipients that got through.
func (t *txn) greylisting() {
	if t.dest == nil {
		return
	}
	g, now := t.a.grey, time.Now()
	watching := g.watching(t.dest.key)
	for i := range t.results {
		r := &t.results[i]
		switch {
		case r.Status == envelope.Deferred && r.Code/100 == 4:
			if d, ok := g.deferred(now, t.dest.key, t.env.Sender, r.Recipient, t.env.Attempts == 0, r.Reply, &t.a.cfg); ok {
				r.RetryAfter = d
			}
		case r.Status == envelope.Delivered && watching:
			g.delivered(now, t.dest.key, t.env.Sender, r.Recipient)
		}
	}
}

// apply runs the first reply rule matching e, reporting whether one did.
func (t *txn) apply(e *Error) bool {
	if e == nil || e.Code == 0 || t.ruled {
		return false
	}
	for _, rule := range t.a.cfg.ReplyRules {
		if rule.matches(e.Code, e.Enhanced, e.Line) {
			reply := strings.TrimSpace(fmt.Sprintf("%d %s %s", e.Code, e.Enhanced, e.Line))
			t.ruled = true
			t.a.pool.apply(t.dest, rule, reply)
			t.a.log.Info("reply rule", slog.String("domain", t.env.Domain), slog.String("relay", e.Relay),
				slog.String("action", string(rule.Action)), slog.String("reply", reply))
			return true
		}
	}
	return false
}

// retryAfter sets RetryAfter d on the deferred recipients that have none:
// those no server answered, and with replied those a server answered
// too.
func (t *txn) retryAfter(d time.Duration, replied bool) {
	for i := range t.results {
		r := &t.results[i]
		if r.Status == envelope.Deferred && r.RetryAfter == 0 && (r.Code == 0 || replied) {
			r.RetryAfter = d
		}
	}
}

// lookup runs one resolver lookup within the agent's bound on lookups in
// flight, and asks once more if the first answer timed out: a lost UDP
// datagram should not cost an envelope the queue's backoff.
func lookup[T any](ctx context.Context, a *Agent, f func() (T, error)) (T, error) {
	select {
	case a.lookups <- struct{}{}:
	case <-ctx.Done():
		var zero T
		return zero, ctx.Err()
	}
	defer func() { <-a.lookups }()
	v, err := f()
	var ne net.Error
	if err != nil && ctx.Err() == nil && errors.As(err, &ne) && ne.Timeout() {
		v, err = f()
	}
	return v, err
}
