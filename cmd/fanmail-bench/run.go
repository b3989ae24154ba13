package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"time"
)

// options are one run's settings; main fills them from flags.
type options struct {
	fanmailSet []string // SECTION.KEY=TOML-VALUE settings added to fanmail's config
	listSet    []string // KEY=VALUE list settings for every list (fanmail list set)
	dkim       []string // algorithms of the DKIM keys made for the list domain
	// personalize is every list's personalize setting ("" leaves the
	// default); full also turns on the web endpoint, so the copies get
	// one-click links.
	personalize string
	workload    string
	world       string          // worldPlain or worldInternet
	net         internetOptions // the Internet world's properties
	setFlags    map[string]bool // flags given on the command line
	members     int
	domains     int
	dist        string
	sinks       int
	sinkPort    int
	size        int
	messages    int // mass: posts to inject
	clients     int
	lists       int // mixed: lists; mass: one-member lists (recipients)
	posts       int // mixed: posts per list
	direct      bool
	rtt         time.Duration
	tempFail    float64
	permFail    float64
	dropShare   float64
	maxConns    int
	implicitMX  int
	nullMX      int
	deadMX      int
	dnsAddr     string

	target        string // "" runs fanmail
	fanmailBin    string
	database      string // lists.database; postgresTemp starts a cluster
	targetPID     int
	targetPIDFile string
	aliases       string
	prepareCmd    string

	timeout  time.Duration
	settle   time.Duration
	workDir  string
	keep     bool
	progress io.Writer // nil: quiet
	log      *slog.Logger
	command  string
}

// runBench sets up the world and the target, injects the workload, waits
// until the sinks have counted every expected recipient (or the timeout),
// and reports.
func runBench(ctx context.Context, o *options) (rep *Report, err error) {
	dir := o.workDir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "fanmail-bench-"); err != nil {
			return nil, fmt.Errorf("create work directory: %w", err)
		}
		// A failed or incomplete run keeps its directory (and fanmail's
		// log) for a look.
		defer func() {
			if o.keep || err != nil || rep == nil || !rep.Complete {
				o.log.Info("work directory kept", "dir", dir)
				return
			}
			os.RemoveAll(dir)
		}()
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create work directory: %w", err)
	}
	runID := strconv.FormatInt(time.Now().UnixNano(), 36)
	p, err := makePlan(o, runID)
	if err != nil {
		return nil, err
	}
	col := newCollector()
	kinds := make(map[string]domainKind, len(p.domains))
	for _, d := range p.domains {
		kinds[d.name] = d.kind
	}
	for _, ps := range p.posts {
		for _, r := range ps.expect {
			if p.expected(r, kinds, o) {
				col.expect(ps.id, r)
			}
		}
	}
	w, err := startWorld(o, p, col)
	if err != nil {
		return nil, err
	}
	defer w.close()
	o.log.Info("world ready", "sinks", len(w.sinks), "sink_port", o.sinkPort, "dns", w.dns.Addr(), "domains", len(p.domains), "dir", dir)

	r := &Report{
		Command: o.command, Machine: machine(), Workload: o.workload,
		Members: o.members, Domains: o.domains, Dist: o.dist, Sinks: len(w.sinks), WorldName: o.world,
		Lists: len(p.lists), Posts: len(p.posts), Clients: o.clients, MessageBytes: o.size,
		RTTMillis: float64(o.rtt) / float64(time.Millisecond), LoadAvg: loadAvg(),
	}
	if o.workload == "mass" {
		r.Members = len(p.lists)
	}

	// The target.
	setupStart := time.Now()
	target, pid := o.target, o.targetPID
	var fm *fanmailTarget
	// The database server the tool started: its CPU during setup (the
	// import) and during delivery is reported apart from fanmail's.
	var dbPID int
	var dbStart, dbMid treeUsage
	if target == "" {
		db, serverPID, stop, err := benchDatabase(ctx, o)
		if err != nil {
			return nil, err
		}
		defer stop()
		dbPID = serverPID
		if dbPID != 0 {
			dbStart, _ = usageTree(dbPID)
		}
		r.Database = describeDatabase(o.database, db)
		if fm, err = setupFanmail(ctx, o, dir, w.dns.Addr(), p, db); err != nil {
			return nil, err
		}
		defer fm.stop()
		if err := fm.start(ctx); err != nil {
			return nil, err
		}
		target, pid = fm.listen, fm.pid()
		r.Target = "fanmail " + fm.bin + " (embedded defaults; config: " + fm.cfg + ")"
	} else {
		r.Target = target
		if o.aliases != "" {
			if err := writeAliases(o.aliases, p.lists); err != nil {
				return nil, err
			}
		}
		if o.prepareCmd != "" {
			out, err := exec.CommandContext(ctx, "sh", "-c", o.prepareCmd).CombinedOutput()
			if err != nil {
				return nil, fmt.Errorf("--prepare-cmd %q: %w\n%s", o.prepareCmd, err, out)
			}
		}
		if pid == 0 && o.targetPIDFile != "" {
			if pid, err = pidFromFile(o.targetPIDFile); err != nil {
				return nil, err
			}
		}
	}
	r.SetupSeconds = time.Since(setupStart).Seconds()
	if fm != nil {
		r.ImportSeconds = fm.importTime.Seconds()
	}
	if dbPID != 0 {
		dbMid, _ = usageTree(dbPID)
		r.DatabaseSetupCPU = float64(dbMid.cpuTicks-dbStart.cpuTicks) / clockTicks
	}
	toolBefore, _ := readProc(os.Getpid())
	var before treeUsage
	if pid != 0 {
		if before, err = usageTree(pid); err != nil {
			return nil, fmt.Errorf("target process: %w", err)
		}
	}

	// Inject, and watch the sinks while it runs.
	runCtx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	if _, expected := col.progress(); expected == 0 {
		col.forget("", nil) // nothing to wait for
	}
	var accepted atomic.Int64
	injected := make(chan injectResult, 1)
	start := time.Now()
	go func() { injected <- inject(runCtx, target, p.posts, o.clients, o.size, col, &accepted) }()
	stopProgress := showProgress(o.progress, start, col, w, &accepted, len(p.posts))
	var inj injectResult
	var injDone bool
	waitErr := error(nil)
	for waiting := true; waiting; {
		select {
		case inj = <-injected:
			injDone = true
			if inj.accepted == 0 {
				waiting = false
				waitErr = fmt.Errorf("no post was accepted: %v", inj.firstErr)
			}
		case <-col.done:
			waiting = false
		case <-runCtx.Done():
			waiting = false
			waitErr = fmt.Errorf("stopped waiting after %v: %w", time.Since(start).Round(time.Millisecond), runCtx.Err())
		}
	}
	if !injDone {
		inj = <-injected // bounded: inject stops when runCtx ends
	}
	// A short quiet period catches duplicates that trail the last copy.
	select {
	case <-time.After(o.settle):
	case <-ctx.Done():
	}
	stopProgress()

	if toolAfter, err := readProc(os.Getpid()); err == nil {
		r.ToolCPUSeconds = float64(toolAfter.utime+toolAfter.stime-toolBefore.utime-toolBefore.stime) / clockTicks
	}
	var after treeUsage
	if pid != 0 {
		if after, err = usageTree(pid); err != nil {
			o.log.Warn("target process gone before measuring", "err", err)
		}
	}
	if fm != nil {
		if err := fm.stop(); err != nil {
			o.log.Warn("stop fanmail", "err", err)
		}
	}
	fill(r, o, col, w, inj, start, before, after)
	if dbPID != 0 {
		if dbEnd, err := usageTree(dbPID); err == nil {
			r.DatabaseCPU = float64(dbEnd.cpuTicks-dbMid.cpuTicks) / clockTicks
		}
	}
	if o.world == worldInternet {
		r.World = worldReport(o, p, col, w)
	}
	if waitErr != nil {
		o.log.Warn("run incomplete", "err", waitErr)
	}
	if errors.Is(ctx.Err(), context.Canceled) {
		return r, ctx.Err()
	}
	return r, nil
}

// fill computes the report's figures.
func fill(r *Report, o *options, col *collector, w *world, inj injectResult, start time.Time, before, after treeUsage) {
	r.InjectSeconds = inj.end.Sub(inj.start).Seconds()
	r.PostsAccepted, r.PostsFailed = inj.accepted, inj.failed
	if inj.firstErr != nil {
		r.InjectError = inj.firstErr.Error()
	}
	if r.InjectSeconds > 0 {
		r.InjectPerSec = float64(inj.accepted) / r.InjectSeconds
	}
	col.mu.Lock()
	r.Expected, r.Delivered, r.Duplicates, r.Stray, r.Bounces = col.expected, col.got, col.dups, col.stray, col.bounces
	last := col.last
	col.mu.Unlock()
	r.Complete = r.Delivered == r.Expected && r.PostsFailed == 0
	if !last.IsZero() {
		r.DeliverSeconds = last.Sub(start).Seconds()
	}
	st := w.stats()
	r.Transactions, r.Connections, r.ConnsRefused = st.Transactions, st.Connections, st.Rejected
	r.RcptsRejected, r.Dropped, r.Bytes = st.RcptRejected, st.Dropped, st.Bytes
	r.DNSQueries = w.dns.TotalQueries()
	if r.DeliverSeconds > 0 {
		r.RcptsPerSec = float64(r.Delivered) / r.DeliverSeconds
		r.PostsPerSec = float64(inj.accepted) / r.DeliverSeconds
		r.TxnsPerSec = float64(r.Transactions) / r.DeliverSeconds
	}
	if after.procs > 0 {
		r.CPUSeconds = float64(after.cpuTicks-before.cpuTicks) / clockTicks
		r.PeakRSSMB = float64(after.hwmKB) / 1024
		r.TargetPIDs = after.procs
	}
	lat := col.latencies()
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	r.LatencyP50ms, r.LatencyP99ms = ms(percentile(lat, 50)), ms(percentile(lat, 99))
	if len(lat) > 0 {
		r.LatencyMaxms = ms(lat[len(lat)-1])
	}
}

// showProgress prints a line a second until the returned func is called.
func showProgress(out io.Writer, start time.Time, col *collector, w *world, accepted *atomic.Int64, posts int) func() {
	if out == nil {
		return func() {}
	}
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		prev := 0
		for {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			got, exp := col.progress()
			st := w.stats()
			fmt.Fprintf(out, "%6.1fs  posts %d/%d  delivered %d/%d (+%d/s)  transactions %d  connections %d\n",
				time.Since(start).Seconds(), accepted.Load(), posts, got, exp, got-prev, st.Transactions, st.Connections)
			prev = got
		}
	}()
	return func() { close(stop); <-done }
}

// absPath makes a flag's path absolute, for files an MTA will read.
func absPath(p string) string {
	if p == "" {
		return ""
	}
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}
