package config

import (
	"fmt"
	"log/slog"
	"strings"

	"fanmail/delivery"
)

// DeliveryLimits are the [delivery] keys for the connection cache, the
// limits per MX group, outbound TLS and reply rules. They map one to one
// onto delivery.Config fields of the same meaning.
type DeliveryLimits struct {
	ConnectionCacheSize       int      `toml:"connection_cache_size"`       // idle connections kept in all; -1 disables
	ConnectionIdleTimeout     Duration `toml:"connection_idle_timeout"`     // close a cached connection idle this long
	ConnectionMaxAge          Duration `toml:"connection_max_age"`          // stop reusing a connection this old
	MaxConnections            int      `toml:"max_connections"`             // per MX group
	InitialConcurrency        int      `toml:"initial_concurrency"`         // where the adaptive window starts
	RecipientsPerTransaction  int      `toml:"recipients_per_transaction"`  // RCPTs per mail transaction
	TransactionsPerConnection int      `toml:"transactions_per_connection"` // before a connection is closed
	RateDelay                 Duration `toml:"rate_delay"`                  // between transactions to one MX group
	SlotWait                  Duration `toml:"slot_wait"`                   // wait for a busy MX group, then defer
	DeadAfter                 int      `toml:"dead_after"`                  // failed sessions before suspending
	DeadSuspend               Duration `toml:"dead_suspend"`                // how long a dead MX group is left alone
	ConnectTimeoutMin         Duration `toml:"connect_timeout_min"`         // connect timeout for a group not reached yet
	ThrottlePause             Duration `toml:"throttle_pause"`              // new connections wait after a 421
	ThrottlePauseMax          Duration `toml:"throttle_pause_max"`          // the pause doubles up to this
	GreylistRetry             Duration `toml:"greylist_retry"`              // first retry of a greylisted recipient
	GreylistRetryMax          Duration `toml:"greylist_retry_max"`          // then doubling up to this; then the queue's backoff
	TLS                       string   `toml:"tls"`                         // opportunistic, required or none

	// Destinations override limits per domain or MX host pattern:
	// [[delivery.destination]] tables, first match wins.
	Destinations []DeliveryDestination `toml:"destination"`
	// ReplyRules, as [[delivery.reply_rule]] tables, replace the built-in
	// rules when any is given.
	ReplyRules []ReplyRule `toml:"reply_rule"`
}

// DeliveryDestination is one [[delivery.destination]] table.
type DeliveryDestination struct {
	Match                     string   `toml:"match"` // "example.com", "*.example.com" or ".example.com"
	MaxConnections            int      `toml:"max_connections,omitempty"`
	RecipientsPerTransaction  int      `toml:"recipients_per_transaction,omitempty"`
	TransactionsPerConnection int      `toml:"transactions_per_connection,omitempty"`
	RateDelay                 Duration `toml:"rate_delay,omitempty"`
	TLS                       string   `toml:"tls,omitempty"`
}

// ReplyRule is one [[delivery.reply_rule]] table.
type ReplyRule struct {
	Code    string   `toml:"code"`           // prefix of "CODE ENHANCED", e.g. "421" or "421 4.7.28"
	Text    string   `toml:"text,omitempty"` // substring of the reply text, case-insensitive
	Action  string   `toml:"action"`         // halve, suspend or none
	Suspend Duration `toml:"suspend,omitempty"`
}

// deliveryKeys shows the delivery agent's defaults under their keys.
func deliveryKeys(d delivery.Config) Delivery {
	return Delivery{
		Resolvers:      d.Resolvers,
		Port:           d.Port,
		ConnectTimeout: Duration(d.ConnectTimeout),
		CommandTimeout: Duration(d.CommandTimeout),
		DataTimeout:    Duration(d.DataTimeout),
		FallbackRelay:  d.FallbackRelay,
		FallbackPolicy: string(d.FallbackPolicy),
		Pipelining:     !d.NoPipelining,
		DeliveryLimits: DeliveryLimits{
			ConnectionCacheSize:       d.ConnCacheSize,
			ConnectionIdleTimeout:     Duration(d.ConnIdleTimeout),
			ConnectionMaxAge:          Duration(d.ConnMaxAge),
			MaxConnections:            d.MaxConns,
			InitialConcurrency:        d.InitialConcurrency,
			RecipientsPerTransaction:  d.RcptsPerTxn,
			TransactionsPerConnection: d.TxnsPerConn,
			RateDelay:                 Duration(d.RateDelay),
			SlotWait:                  Duration(d.SlotWait),
			DeadAfter:                 d.DeadAfter,
			DeadSuspend:               Duration(d.DeadSuspend),
			ConnectTimeoutMin:         Duration(d.ConnectTimeoutMin),
			ThrottlePause:             Duration(d.ThrottlePause),
			ThrottlePauseMax:          Duration(d.ThrottlePauseMax),
			GreylistRetry:             Duration(d.GreylistRetry),
			GreylistRetryMax:          Duration(d.GreylistRetryMax),
			TLS:                       string(d.TLS),
		},
	}
}

func validTLS(s string) bool {
	return s == "opportunistic" || s == "required" || s == "none"
}

// validate checks the delivery limits, naming the key of each problem.
func (l DeliveryLimits) validate(report func(key, format string, args ...any)) {
	bad := func(key, format string, args ...any) { report("delivery."+key, format, args...) }
	if l.ConnectionCacheSize < -1 {
		bad("connection_cache_size", "must be -1 (off), 0 (default) or positive")
	}
	atLeast(bad, 0, "must not be negative", map[string]int{
		"max_connections":             l.MaxConnections,
		"initial_concurrency":         l.InitialConcurrency,
		"recipients_per_transaction":  l.RecipientsPerTransaction,
		"transactions_per_connection": l.TransactionsPerConnection,
		"dead_after":                  l.DeadAfter,
	})
	atLeast(bad, 0, "must not be negative", map[string]Duration{
		"connection_idle_timeout": l.ConnectionIdleTimeout,
		"connection_max_age":      l.ConnectionMaxAge,
		"rate_delay":              l.RateDelay,
		"slot_wait":               l.SlotWait,
		"dead_suspend":            l.DeadSuspend,
		"connect_timeout_min":     l.ConnectTimeoutMin,
		"throttle_pause":          l.ThrottlePause,
		"throttle_pause_max":      l.ThrottlePauseMax,
		"greylist_retry":          l.GreylistRetry,
		"greylist_retry_max":      l.GreylistRetryMax,
	})
	if l.ThrottlePauseMax > 0 && l.ThrottlePauseMax < l.ThrottlePause {
		bad("throttle_pause_max", "%v is less than throttle_pause %v", l.ThrottlePauseMax, l.ThrottlePause)
	}
	if l.GreylistRetryMax > 0 && l.GreylistRetryMax < l.GreylistRetry {
		bad("greylist_retry_max", "%v is less than greylist_retry %v", l.GreylistRetryMax, l.GreylistRetry)
	}
	if !validTLS(l.TLS) {
		bad("tls", "%q is not opportunistic, required or none", l.TLS)
	}
	for i, d := range l.Destinations {
		key := fmt.Sprintf("destination[%d]", i)
		m := strings.TrimPrefix(strings.TrimPrefix(d.Match, "*"), ".")
		if m == "" || strings.ContainsAny(m, " \t@*") {
			bad(key+".match", "%q is not a domain, *.domain or .domain", d.Match)
		}
		if d.MaxConnections < 0 || d.RecipientsPerTransaction < 0 || d.TransactionsPerConnection < 0 || d.RateDelay < 0 {
			bad(key, "limits must not be negative")
		}
		if d.TLS != "" && !validTLS(d.TLS) {
			bad(key+".tls", "%q is not opportunistic, required or none", d.TLS)
		}
	}
	for i, r := range l.ReplyRules {
		key := fmt.Sprintf("reply_rule[%d]", i)
		if r.Code == "" || !strings.ContainsAny(r.Code[:1], "2345") {
			bad(key+".code", "%q must start with a reply code digit, e.g. \"421\" or \"421 4.7.28\"", r.Code)
		}
		switch r.Action {
		case "halve", "none":
		case "suspend":
			if r.Suspend <= 0 {
				bad(key+".suspend", "suspend needs a positive duration such as \"10m\"")
			}
		default:
			bad(key+".action", "%q is not halve, suspend or none", r.Action)
		}
	}
}

// DeliveryConfig maps the [delivery] and [routes] settings, and the
// aliases' program_timeout, onto the delivery agent's Config.
func (c *Config) DeliveryConfig(log *slog.Logger) delivery.Config {
	d, l := c.Delivery, c.Delivery.DeliveryLimits
	dc := delivery.Config{
		Resolvers:          d.Resolvers,
		Port:               d.Port,
		Routes:             c.Routes,
		FallbackRelay:      d.FallbackRelay,
		FallbackPolicy:     delivery.FallbackPolicy(d.FallbackPolicy),
		NoPipelining:       !d.Pipelining,
		HELO:               c.Hostname,
		ProgramTimeout:     c.Aliases.ProgramTimeout.D(),
		ConnectTimeout:     d.ConnectTimeout.D(),
		CommandTimeout:     d.CommandTimeout.D(),
		DataTimeout:        d.DataTimeout.D(),
		Logger:             log,
		ConnCacheSize:      l.ConnectionCacheSize,
		ConnIdleTimeout:    l.ConnectionIdleTimeout.D(),
		ConnMaxAge:         l.ConnectionMaxAge.D(),
		MaxConns:           l.MaxConnections,
		InitialConcurrency: l.InitialConcurrency,
		RcptsPerTxn:        l.RecipientsPerTransaction,
		TxnsPerConn:        l.TransactionsPerConnection,
		RateDelay:          l.RateDelay.D(),
		SlotWait:           l.SlotWait.D(),
		DeadAfter:          l.DeadAfter,
		DeadSuspend:        l.DeadSuspend.D(),
		ConnectTimeoutMin:  l.ConnectTimeoutMin.D(),
		ThrottlePause:      l.ThrottlePause.D(),
		ThrottlePauseMax:   l.ThrottlePauseMax.D(),
		GreylistRetry:      l.GreylistRetry.D(),
		GreylistRetryMax:   l.GreylistRetryMax.D(),
		TLS:                delivery.TLSMode(l.TLS),
		Sources:            c.sourcePools(),
	}
	for _, x := range l.Destinations {
		dc.Destinations = append(dc.Destinations, delivery.Destination{
			Match:       x.Match,
			MaxConns:    x.MaxConnections,
			RcptsPerTxn: x.RecipientsPerTransaction,
			TxnsPerConn: x.TransactionsPerConnection,
			RateDelay:   x.RateDelay.D(),
			TLS:         delivery.TLSMode(x.TLS),
		})
	}
	// No rules in the file keeps delivery's defaults (nil), not none.
	for _, r := range l.ReplyRules {
		dc.ReplyRules = append(dc.ReplyRules, delivery.ReplyRule{
			Code: r.Code, Text: r.Text, Action: delivery.ReplyAction(r.Action), Suspend: r.Suspend.D(),
		})
	}
	return dc
}
