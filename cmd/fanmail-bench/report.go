package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"text/tabwriter"
)

// Report is one run's result; its JSON form is what --json prints.
type Report struct {
	Command  string `json:"command"`
	Machine  string `json:"machine"`
	Workload string `json:"workload"`
	Target   string `json:"target"`

	Members      int     `json:"members"`
	Domains      int     `json:"domains"`
	Dist         string  `json:"dist"`
	Sinks        int     `json:"sinks"`
	Lists        int     `json:"lists"`
	Posts        int     `json:"posts"`
	Clients      int     `json:"clients"`
	MessageBytes int     `json:"message_bytes"`
	RTTMillis    float64 `json:"rtt_ms"`
	WorldName    string  `json:"world"`

	Database      string  `json:"database,omitempty"`       // fanmail's list store
	SetupSeconds  float64 `json:"setup_seconds"`            // list import or --prepare-cmd, not timed below
	ImportSeconds float64 `json:"import_seconds,omitempty"` // fanmail member add, within setup
	// The database server the tool started (--database postgres-temp):
	// its CPU during setup and from injection to the end.
	DatabaseSetupCPU float64 `json:"database_setup_cpu_seconds,omitempty"`
	DatabaseCPU      float64 `json:"database_cpu_seconds,omitempty"`
	InjectSeconds    float64 `json:"inject_seconds"`
	PostsAccepted    int     `json:"posts_accepted"`
	PostsFailed      int     `json:"posts_failed"`
	InjectError      string  `json:"inject_error,omitempty"`
	InjectPerSec     float64 `json:"inject_posts_per_sec"`

	Expected       int     `json:"recipients_expected"`
	Delivered      int     `json:"recipients_delivered"`
	Complete       bool    `json:"complete"`
	DeliverSeconds float64 `json:"deliver_seconds"` // injection start → last expected recipient counted
	RcptsPerSec    float64 `json:"recipients_per_sec"`
	PostsPerSec    float64 `json:"posts_per_sec"` // posts / deliver_seconds: end to end
	TxnsPerSec     float64 `json:"transactions_per_sec"`

	Transactions  int   `json:"transactions"`
	Connections   int   `json:"connections"`
	DNSQueries    int   `json:"dns_queries"` // answered by the tool's DNS server, all types
	ConnsRefused  int   `json:"connections_refused"`
	RcptsRejected int   `json:"rcpts_rejected"`
	Dropped       int   `json:"transactions_dropped"`
	Bytes         int64 `json:"bytes"`
	Duplicates    int   `json:"duplicates"`
	Stray         int   `json:"stray"`
	Bounces       int   `json:"bounces"` // null-sender reports (DSNs) the target sent

	CPUSeconds float64 `json:"cpu_seconds"`
	PeakRSSMB  float64 `json:"peak_rss_mb"`
	TargetPIDs int     `json:"target_processes"`
	// The tool's own sinks and DNS share the machine with the target.
	ToolCPUSeconds float64 `json:"tool_cpu_seconds"`
	LoadAvg        string  `json:"loadavg_before"` // /proc/loadavg at the start: other load skews results

	LatencyP50ms float64 `json:"latency_p50_ms"`
	LatencyP99ms float64 `json:"latency_p99_ms"`
	LatencyMaxms float64 `json:"latency_max_ms"`

	// World is the Internet world's part (--world internet).
	World *WorldReport `json:"world_report,omitempty"`
}

// machine describes where the run happened, for the record.
func machine() string {
	kernel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	model := ""
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	return fmt.Sprintf("%d CPUs (%s), Linux %s, %s", runtime.NumCPU(), model, strings.TrimSpace(string(kernel)), runtime.Version())
}

// loadAvg is the first three fields of /proc/loadavg.
func loadAvg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

func (r *Report) writeJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

func (r *Report) writeTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, format string, args ...any) { fmt.Fprintf(tw, "%s\t"+format+"\n", append([]any{k}, args...)...) }
	row("workload", "%s: %d posts of %d bytes to %d list(s), %d members over %d domains (%s), %d sinks, %d clients",
		r.Workload, r.Posts, r.MessageBytes, r.Lists, r.Members, r.Domains, r.Dist, r.Sinks, r.Clients)
	row("target", "%s", r.Target)
	if r.RTTMillis > 0 {
		row("emulated RTT", "%.1f ms", r.RTTMillis)
	}
	if r.Database != "" {
		row("list store", "%s", r.Database)
	}
	row("setup (untimed)", "%.2f s", r.SetupSeconds)
	if r.ImportSeconds > 0 {
		row("member import", "%.2f s (fanmail member add, within setup)", r.ImportSeconds)
	}
	if r.DatabaseSetupCPU > 0 || r.DatabaseCPU > 0 {
		row("database CPU", "%.2f s during setup, %.2f s from injection on (PostgreSQL's processes)", r.DatabaseSetupCPU, r.DatabaseCPU)
	}
	row("injection", "%d accepted, %d failed in %.3f s (%.1f posts/s)", r.PostsAccepted, r.PostsFailed, r.InjectSeconds, r.InjectPerSec)
	if r.InjectError != "" {
		row("first injection error", "%s", r.InjectError)
	}
	status := "all"
	if !r.Complete {
		status = "INCOMPLETE:"
	}
	row("delivered", "%s %d of %d recipients in %.3f s", status, r.Delivered, r.Expected, r.DeliverSeconds)
	row("rate", "%.0f recipients/s, %.1f posts/s end to end, %.1f transactions/s", r.RcptsPerSec, r.PostsPerSec, r.TxnsPerSec)
	row("sinks saw", "%d transactions, %d connections (%d refused), %d RCPTs rejected, %d dropped, %d bytes",
		r.Transactions, r.Connections, r.ConnsRefused, r.RcptsRejected, r.Dropped, r.Bytes)
	row("dns", "%d queries answered", r.DNSQueries)
	row("duplicates", "%d (stray: %d, bounces: %d)", r.Duplicates, r.Stray, r.Bounces)
	row("latency", "p50 %.0f ms, p99 %.0f ms, max %.0f ms (250 of the post → sink)", r.LatencyP50ms, r.LatencyP99ms, r.LatencyMaxms)
	if r.TargetPIDs > 0 {
		row("target CPU", "%.2f s over %d process(es), peak RSS %.1f MB", r.CPUSeconds, r.TargetPIDs, r.PeakRSSMB)
	} else {
		row("target CPU", "not measured (give --target-pid or --target-pidfile)")
	}
	row("tool CPU", "%.2f s (sinks, DNS, injection: same machine)", r.ToolCPUSeconds)
	row("machine", "%s; load average before: %s", r.Machine, r.LoadAvg)
	if err := tw.Flush(); err != nil {
		return err
	}
	if r.World != nil {
		return r.World.writeTable(w)
	}
	return nil
}
