package main

import (
	"context"
	"log/slog"

	"fanmail/config"
	"fanmail/lists"
	"fanmail/unsubscribe"
	"fanmail/web"
)

// buildWeb binds the one-click unsubscribe endpoint with the unsubscribe
// keys (which unsubscribe.Open created on first use, and delivery mints
// the links with); it returns nil when [web] listen is not set.
func buildWeb(cfg config.Config, keys *unsubscribe.Keyring, store *lists.Store, log *slog.Logger) (*web.Server, error) {
	if cfg.Web.Listen == "" {
		return nil, nil
	}
	w := web.New(cfg.WebConfig(log), keys, store)
	if err := w.Listen(); err != nil {
		return nil, err
	}
	log.Info("web endpoint started", "listen", w.Addr().String(), "base_url", cfg.Web.BaseURL,
		"keys", keys.Keys(), "minting_key", keys.MintingKey())
	return w, nil
}

// serveWeb answers the endpoint until stopWeb. Its failure is logged and
// leaves SMTP and delivery running: the links are retried by providers.
func (s *server) serveWeb() {
	if s.web == nil {
		return
	}
	go func() {
		if err := s.web.Serve(); err != nil {
			s.log.Error("web endpoint stopped", "err", err)
		}
	}()
}

// stopWeb lets requests in progress finish for up to ctx.
func (s *server) stopWeb(ctx context.Context) {
	if s.web != nil {
		_ = s.web.Shutdown(ctx)
	}
}
