package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"fanmail/control"
	"fanmail/delivery"
	"fanmail/delivery/local"
	"fanmail/expander"
	"fanmail/ingress"
	"fanmail/lists"
	"fanmail/queuegroups"
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
	// An aliases file's |program must never run as root: refuse to start.
	var programCred *local.Credentials
	if len(cfg.Aliases.Files) > 0 {
		if programCred, err = local.RunAs(cfg.Aliases.ProgramUser, os.Geteuid()); err != nil {
			return err
		}
	}
	logOut := newLogWriter(c.App.ErrWriter, 100*time.Millisecond)
	defer logOut.Close()
	log := slog.New(slog.NewTextHandler(logOut, nil))
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return fmt.Errorf("create data directory: %w", err)
	}
	store, err := lists.Open(cfg.ListsDB())
	if err != nil {
		return err
	}
	defer store.Close()

	deliveryCfg := cfg.DeliveryConfig(log)
	deliveryCfg.ProgramCred, deliveryCfg.ProgramTimeout = programCred, cfg.Aliases.ProgramTimeout.D()
	agent, err := delivery.New(deliveryCfg)
	if err != nil {
		return err
	}
	defer agent.Close()

	spoolCfg, err := cfg.Spool(log)
	if err != nil {
		return err
	}
	queue, err := queuegroups.Open(spoolCfg, agent)
	if err != nil {
		return err
	}

	router, err := expander.NewRouter(cfg.Routing())
	if err != nil {
		queue.Close(context.Background())
		return err
	}
	exp := expander.New(store, cfg.Hostname, router)
	var aliasTable *expander.Aliases
	if len(cfg.Aliases.Files) > 0 {
		aliasTable, err = expander.LoadAliases(expander.AliasConfig{
			Files: cfg.Aliases.Files, LocalDomains: cfg.Aliases.LocalDomains,
			Merge: cfg.Aliases.MergeDuplicates, AllowIncludeExec: cfg.Aliases.AllowIncludeExec,
			Logger: log, Lists: store.Lists,
		})
		if err != nil {
			queue.Close(context.Background())
			return err
		}
		exp.WithAliases(aliasTable)
	}
	srv := ingress.New(ingress.Config{
		Listen:         cfg.Listen,
		Hostname:       cfg.Hostname,
		MaxMessageSize: int64(cfg.MaxMessageSize),
		Load: ingress.Load{
			QueueLA:          cfg.Load.QueueLA,
			DelayLA:          cfg.Load.DelayLA,
			RefuseLA:         cfg.Load.RefuseLA,
			QueueDepthQueue:  cfg.Load.QueueDepthQueue,
			QueueDepthDelay:  cfg.Load.QueueDepthDelay,
			QueueDepthRefuse: cfg.Load.QueueDepthRefuse,
			MaxSessions:      cfg.Load.MaxSessions,
			Delay:            cfg.Load.Delay.D(),
			// The one place that knows how to count the spool's
			// pending recipients; ingress samples it at most every
			// 250ms.
			QueueDepth: func() int { return queue.Stats().Recipients },
		},
		Logger: log,
	}, exp, queue, queuegroups.NewIDSource())
	if err := srv.Listen(); err != nil {
		queue.Close(context.Background())
		return err
	}
	queue.Start()
	adminCtx, stopAdmin := context.WithCancel(context.Background())
	defer stopAdmin()
	if err := control.Serve(adminCtx, cfg.AdminSocket(), queue, log); err != nil {
		log.Warn("queue tools will read the spool directly", "err", err)
	}
	dataDir, _ := filepath.Abs(cfg.DataDir)
	log.Info("fanmail started", "listen", srv.Addr().String(), "hostname", cfg.Hostname,
		"data_dir", dataDir, "lists_db", cfg.ListsDB(), "queue_groups", len(spoolCfg.Groups))
	logOut.flush()

	if aliasTable != nil {
		go aliasTable.Watch(adminCtx, 2*time.Second)
	}

	served := make(chan error, 1)
	go func() { served <- srv.Serve() }()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sigs)
	var serveErr error
wait:
	for {
		select {
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				// sendmail's newaliases signal: reload the aliases files.
				if aliasTable != nil {
					_ = aliasTable.Reload()
				}
				continue
			}
			log.Info("shutting down", "signal", sig.String())
		case serveErr = <-served:
			log.Error("SMTP server stopped", "err", serveErr)
		}
		break wait
	}

	// Stop taking mail first, so every 250 already sent is in the journal,
	// then give deliveries in progress a moment to finish; whatever is
	// still pending stays queued for the next start.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	srv.Shutdown(ctx)
	cancel()
	ctx, cancel = context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := queue.Close(ctx); err != nil {
		log.Warn("deliveries interrupted at shutdown; they stay queued", "err", err)
	}
	log.Info("fanmail stopped")
	return serveErr
}
