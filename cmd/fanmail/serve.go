package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"slices"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"fanmail/config"
	"fanmail/control"
	"fanmail/delivery"
	"fanmail/delivery/local"
	"fanmail/dkim"
	"fanmail/dmarc"
	"fanmail/expander"
	"fanmail/ingress"
	"fanmail/internal/memlimit"
	"fanmail/listmail"
	"fanmail/lists"
	"fanmail/metrics"
	"fanmail/moderation"
	"fanmail/queuegroups"
	"fanmail/render"
	"fanmail/resolver"
	"fanmail/unsubscribe"
	"fanmail/web"
)

func serveCommand() *cli.Command {
	return &cli.Command{
		Name:  "serve",
		Usage: "run the SMTP server and the queue runners",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "listen", Usage: "SMTP listen `ADDR` (default 127.0.0.1:2525)", EnvVars: []string{"FANMAIL_LISTEN"}},
			&cli.StringFlag{Name: "hostname", Usage: "`NAME` for EHLO and Received (default: the OS hostname)", EnvVars: []string{"FANMAIL_HOSTNAME"}},
		},
		Action: runServe,
	}
}

func runServe(c *cli.Context) error {
	if os.Getenv("GOGC") == "" {
		// The server's live heap is small (tens of MB even mid fan-out)
		// and its garbage is per message: collecting a fifth as often
		// saves a third of the CPU at the accept rates that matter, for
		// a few tens of MB. GOGC in the environment still decides.
		debug.SetGCPercent(400)
	}
	cfg, err := loadConfig(c)
	if err != nil {
		return err
	}
	logOut := newLogWriter(c.App.ErrWriter, 100*time.Millisecond)
	log, err := newLogger(logOut, c.String("log-format"), c.String("log-level"))
	if err != nil {
		logOut.Close()
		return err
	}
	s, err := buildServer(cfg, logOut, log)
	if err != nil {
		return err
	}
	s.memoryLimit, s.memKeeper = setMemoryLimit(cfg, s.queue.MaxChildren(), log)
	serveErr := s.run()
	s.stop()
	return serveErr
}

// setMemoryLimit applies memory_limit exactly, or else the limit derived
// from the cap on deliveries in progress, which a Keeper raises while the
// live heap outgrows half of it; GOMEMLIMIT in the environment, when set,
// has decided already. It returns the limit as the start-up line shows
// it, and the Keeper, if any.
func setMemoryLimit(cfg config.Config, children int, log *slog.Logger) (string, *memlimit.Keeper) {
	if env := os.Getenv("GOMEMLIMIT"); env != "" {
		return "GOMEMLIMIT=" + env, nil
	}
	if limit := int64(cfg.MemoryLimit); limit != 0 {
		debug.SetMemoryLimit(limit)
		return fmt.Sprintf("%dMB", limit>>20), nil
	}
	k := memlimit.New(queuegroups.AutoMemoryLimit(children), log)
	return fmt.Sprintf("%dMB", k.Limit()>>20), k
}

// server is the pipeline of one fanmail serve, wired: the list store,
// the delivery agent, the spool, the expander with its aliases, and the
// SMTP listener.
type server struct {
	cfg      config.Config
	logOut   *logWriter
	log      *slog.Logger
	store    *lists.Store
	resolver *resolver.Resolver
	agent    *delivery.Agent
	queue    *queuegroups.Queue
	aliases  *expander.Aliases // nil: no aliases files
	smtp     *ingress.Server
	keyPair  *ingress.KeyPair // nil: no STARTTLS
	metrics  *metrics.Metrics
	web      *web.Server // nil: [web] listen not set
	mod      *moderation.Runner
	listmail *listmail.Service
	keys     *dkim.Keyring
	groups   int // queue groups, for the start-up line
	// memoryLimit is the soft memory limit in force, for the start-up
	// line; memKeeper, when the limit is derived, keeps it above twice
	// the live heap.
	memoryLimit string
	memKeeper   *memlimit.Keeper

	modStop context.CancelFunc // stops the moderation and listmail runners, which queue mail: before the queue closes
	modDone chan struct{}

	ctx    context.Context // ends when the server stops: the control socket and the aliases watcher
	cancel context.CancelFunc
}

// buildServer opens every part of the pipeline, in the order each needs
// the last, and binds the SMTP port. On error it closes what it opened.
func buildServer(cfg config.Config, logOut *logWriter, log *slog.Logger) (_ *server, err error) {
	s := &server{cfg: cfg, logOut: logOut, log: log}
	defer func() {
		if err != nil {
			s.close()
		}
	}()
	// An aliases file's |program must never run as root: refuse to start.
	var programCred *local.Credentials
	if len(cfg.Aliases.Files) > 0 {
		if programCred, err = local.RunAs(cfg.Aliases.ProgramUser, os.Geteuid()); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return nil, fmt.Errorf("create data directory: %w", err)
	}
	// A key the admin meant to sign with and fanmail cannot use must stop
	// the start, not leave mail silently unsigned: every problem names
	// its file and the fix.
	keyDir := dkim.KeyDir(cfg.DataDir)
	if s.keys, err = dkim.LoadKeyring(keyDir, nil); err != nil {
		return nil, fmt.Errorf("DKIM keys in %s:\n%w", keyDir, err)
	}
	if s.store, err = lists.Open(cfg.ListsDB()); err != nil {
		return nil, err
	}
	deliveryCfg := cfg.DeliveryConfig(s.log)
	if cfg.TLS.Cert != "" {
		// The node's certificate is also its client certificate to the
		// fallback relay, which may know it by it ([relay] peer_certs).
		deliveryCfg.ClientCert = func() (*tls.Certificate, error) { return s.keyPair.GetCertificate(nil) }
	}
	deliveryCfg.ProgramCred = programCred
	// One resolver and cache for delivery's MX lookups and the DMARC
	// check of posters' domains.
	if s.resolver, err = delivery.NewResolver(deliveryCfg); err != nil {
		return nil, err
	}
	deliveryCfg.Resolver = s.resolver
	// Lists that personalize get each member's sender, one-click link
	// and signature at delivery time; the links need [web] base_url.
	members := &render.Members{Keys: s.keys}
	var unsubKeys *unsubscribe.Keyring
	if cfg.Web.Listen != "" {
		if unsubKeys, err = unsubscribe.Open(cfg.UnsubscribeKeys()); err != nil {
			return nil, err
		}
		if base, err := unsubscribe.ParseBaseURL(cfg.Web.BaseURL); err == nil {
			members.Unsubscribe, members.BaseURL = unsubKeys, base
		}
	}
	deliveryCfg.Personalizer = members
	if s.agent, err = delivery.New(deliveryCfg); err != nil {
		return nil, err
	}
	spoolCfg, err := cfg.Spool(s.log)
	if err != nil {
		return nil, err
	}
	router, err := expander.NewRouter(cfg.Routing())
	if err != nil {
		return nil, err
	}
	exp := expander.New(s.store, cfg.Hostname, router).
		WithRoles(expander.Roles{Postmaster: cfg.AdminAddress, Abuse: cfg.AbuseAddress, ListDomains: s.listDomains}).
		WithDMARC(dmarc.New(s.resolver)).
		WithKeys(s.keys)
	if cfg.AdminAddress == "" {
		s.log.Warn("admin_address is not set: mail to postmaster is refused, which RFC 5321 §4.5.1 forbids")
	}
	if len(cfg.Aliases.Files) > 0 {
		if s.aliases, err = expander.LoadAliases(cfg.AliasConfig(s.log, s.store.Lists)); err != nil {
			return nil, err
		}
		exp.WithAliases(s.aliases)
	}
	ids := queuegroups.NewNodeIDSource(cfg.Node.Name)
	// Mail for a list's own addresses is handled by listmail, in
	// front of the delivery agent, which also hands it the 5xx replies
	// of lists' mail; its answers go to the queue opened with it.
	s.listmail = listmail.New(listmail.Config{Store: s.store, Expander: exp, IDs: ids, Keys: s.keys,
		Hostname: cfg.Hostname, Logger: s.log})
	s.metrics = s.newMetrics(spoolCfg)
	if s.queue, err = queuegroups.Open(spoolCfg, s.metrics.Deliverer(testDeliverer(s.listmail.Deliverer(s.agent)))); err != nil {
		return nil, err
	}
	s.listmail.SetQueue(s.queue)
	s.groups = len(spoolCfg.Groups)
	// The one place that knows how to count the spool's pending
	// recipients; ingress samples it at most every 250ms.
	queueDepth := func() int { return s.queue.Stats().Recipients }
	ic := cfg.IngressConfig(s.log, queueDepth)
	// min_free_space watches every disk a post is written to: the spool's
	// directories, and the data directory with lists.db.
	ic.Load.Spool = []string{cfg.DataDir}
	for _, g := range spoolCfg.Groups {
		ic.Load.Spool = append(ic.Load.Spool, g.Dirs...)
	}
	if cfg.TLS.Cert != "" {
		// A broken pair is a start-up error naming the file.
		if s.keyPair, err = ingress.LoadKeyPair(cfg.TLS.Cert, cfg.TLS.Key, s.log); err != nil {
			return nil, err
		}
		ic.TLS, ic.RequireTLS = ingress.ServerTLS(s.keyPair, cfg.TLS.MinTLSVersion()), cfg.TLS.Required
	}
	s.smtp = ingress.New(ic, exp, s.queue, ids)
	// The runner also writes the node's heartbeat, which mod release
	// reads on other nodes.
	s.mod = moderation.New(moderation.Config{Store: s.store, Expander: exp, Queue: s.queue, IDs: ids,
		Keys: s.keys, Hostname: cfg.Hostname, Logger: s.log, Version: readBuildInfo().String()})
	if err := s.smtp.Listen(); err != nil {
		return nil, err
	}
	if s.web, err = buildWeb(cfg, unsubKeys, s.store, s.log); err != nil {
		return nil, err
	}
	return s, nil
}

// run starts the runners, the control socket and the aliases watcher,
// serves SMTP and returns when a signal says stop (SIGHUP reloads the
// aliases instead) or the SMTP server fails.
func (s *server) run() error {
	// Signals are caught before the start is announced, so a SIGTERM
	// that follows the "fanmail started" line always stops it cleanly.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sigs)
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.queue.Start()
	if s.memKeeper != nil {
		go s.memKeeper.Run(s.ctx, time.Second)
	}
	if err := control.Serve(s.ctx, s.cfg.AdminSocket(), controlView{s.queue, s.metrics}, s.log); err != nil {
		s.log.Warn("queue tools will read the spool directly", "err", err)
	}
	go s.metrics.Run(s.ctx)
	metricsAddr := "off"
	if l := s.cfg.Metrics.Listen; l != "" {
		addr, err := s.metrics.Serve(s.ctx, l, s.log)
		if err != nil {
			return err
		}
		metricsAddr = addr.String()
	}
	// Held posts approved while no server ran go out now.
	var modCtx context.Context
	modCtx, s.modStop = context.WithCancel(context.Background())
	s.modDone = make(chan struct{})
	go func() {
		defer close(s.modDone)
		done := make(chan struct{})
		go func() {
			defer close(done)
			s.listmail.Run(modCtx)
		}()
		s.mod.Run(modCtx)
		<-done
	}()
	dataDir, _ := filepath.Abs(s.cfg.DataDir)
	s.log.Info("fanmail started", "listen", s.smtp.Addr().String(), "hostname", s.cfg.Hostname,
		"data_dir", dataDir, "lists_db", lists.Describe(s.cfg.ListsDB()), "node", s.cfg.Node.Name, "queue_groups", s.groups, "metrics", metricsAddr,
		"starttls", s.keyPair != nil, "dkim_domains", signingDomains(s.keys), "memory_limit", s.memoryLimit)
	s.logOut.flush()
	if s.aliases != nil {
		go s.aliases.Watch(s.ctx, 2*time.Second)
	}

	s.serveWeb()
	served := make(chan error, 1)
	go func() { served <- s.smtp.Serve() }()
	for {
		select {
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				// sendmail's newaliases signal: reload the aliases files,
				// and the TLS certificate, as after a renewal.
				if s.aliases != nil {
					_ = s.aliases.Reload()
				}
				if s.keyPair != nil {
					if err := s.keyPair.Reload(); err != nil {
						s.log.Error("TLS certificate not reloaded; still serving the previous one", "err", err)
					}
				}
				continue
			}
			s.log.Info("shutting down", "signal", sig.String())
			return nil
		case err := <-served:
			s.log.Error("SMTP server stopped", "err", err)
			return err
		}
	}
}

// stop takes no more mail first, so every 250 already sent is in the
// journal, then gives deliveries in progress a moment to finish; whatever
// is still pending stays queued for the next start.
func (s *server) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	s.smtp.Shutdown(ctx)
	s.stopWeb(ctx)
	cancel()
	if s.modStop != nil {
		s.modStop()
		<-s.modDone
	}
	ctx, cancel = context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := s.queue.Close(ctx); err != nil {
		s.log.Warn("deliveries interrupted at shutdown; they stay queued", "err", err)
	}
	s.log.Info("fanmail stopped")
	s.close()
}

// signingDomains lists the domains kr signs for, for the start-up line.
func signingDomains(kr *dkim.Keyring) []string {
	var out []string
	for _, k := range kr.Keys() {
		if kr.Signs(k) && !slices.Contains(out, k.Domain) {
			out = append(out, k.Domain)
		}
	}
	return out
}

// close releases whatever buildServer and run opened, the queue last
// of the pipeline: stop has closed it already, and after a failed build
// its runners never started.
func (s *server) close() {
	if s.cancel != nil {
		s.cancel()
	}
	s.stopWeb(context.Background())
	if s.queue != nil {
		_ = s.queue.Close(context.Background())
	}
	if s.agent != nil {
		s.agent.Close()
	}
	if s.resolver != nil {
		s.resolver.Close()
	}
	if s.store != nil {
		s.store.Close()
	}
	if s.logOut != nil {
		s.logOut.Close()
	}
}
