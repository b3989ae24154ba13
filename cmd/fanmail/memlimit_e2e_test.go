package main

import (
	"os"
	"testing"
	"time"
)

// The server runs under a soft memory limit: derived from the cap on
// deliveries in progress, or memory_limit, or GOMEMLIMIT from the
// environment, which wins; the Go runtime's own figure on /metrics
// shows it is in force, and the start-up line names it.
func TestMemoryLimit(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		top   string // keys before the config's first table
		extra string
		env   []string
		want  int64
		shown string
	}{
		{"derived", "", "[queue]\nmax_queue_children = 100\n", nil, 96<<20 + 100*128<<10, "memory_limit=108MB"},
		{"configured", "memory_limit = \"200MB\"\n", "", nil, 200 << 20, "memory_limit=200MB"},
		{"environment", "memory_limit = \"200MB\"\n", "", []string{"GOMEMLIMIT=300MiB"}, 300 << 20, `memory_limit="GOMEMLIMIT=300MiB"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			n := newFakeNet(t, []string{"a.test"}, nil)
			cfg := n.newConfig(t, tt.extra+"\n[metrics]\nlisten = \"127.0.0.1:0\"\n")
			text, err := os.ReadFile(cfg)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(cfg, append([]byte(tt.top), text...), 0o600); err != nil {
				t.Fatal(err)
			}
			p := startFanmail(t, cfg, tt.env...)
			mustLog(t, p, tt.shown, 10*time.Second)
			base := p.httpBase(t, metricsAddrRE, "metrics address")
			if got := value(scrape(t, base+"/metrics"), "go_gc_gomemlimit_bytes"); got != float64(tt.want) {
				t.Errorf("go_gc_gomemlimit_bytes = %.0f, want %d", got, tt.want)
			}
		})
	}
}
