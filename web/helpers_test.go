package web

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"fanmail/internal/testutil"
	"fanmail/lists"
	"fanmail/unsubscribe"
)

const (
	announce = "announce@example.org"
	staff    = "staff@example.org"
)

// fixture is a real server on loopback over a real list store:
// announce has alice, bob and carol; staff has alice and dave.
type fixture struct {
	srv   *Server
	base  string // http://127.0.0.1:PORT
	store *lists.Store
	keys  *unsubscribe.Keyring
	log   *testutil.SyncBuffer
}

func newFixture(t *testing.T, configure func(*Config)) *fixture {
	t.Helper()
	dir := t.TempDir()
	store := testutil.ListStore(t, dir, announce, "", "alice@example.com", "bob@example.com", "carol@example.net")
	ctx := context.Background()
	if err := store.CreateList(ctx, staff, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := store.AddMembers(ctx, staff, []string{"alice@example.com", "dave@example.com"}); err != nil {
		t.Fatal(err)
	}
	keys, err := unsubscribe.Open(filepath.Join(dir, "unsubscribe-keys"))
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{store: store, keys: keys, log: &testutil.SyncBuffer{}}
	cfg := DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.Logger = slog.New(slog.NewTextHandler(f.log, nil))
	cfg.RateBurst = 1000 // every test request comes from 127.0.0.1; the limit has its own test
	if configure != nil {
		configure(&cfg)
	}
	f.srv = New(cfg, keys, store)
	if err := f.srv.Listen(); err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- f.srv.Serve() }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := f.srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
		if t.Failed() {
			t.Logf("server log:\n%s", f.log.String())
		}
	})
	f.base = "http://" + f.srv.Addr().String()
	return f
}

// link is the one-click URL of member on list.
func (f *fixture) link(t *testing.T, list, member string) string {
	t.Helper()
	tok, err := f.keys.Mint(list, member)
	if err != nil {
		t.Fatal(err)
	}
	return unsubscribe.URL(f.base, tok)
}

// reply is what a request got.
type reply struct {
	code   int
	header http.Header
	body   string
}

// do sends one request on a connection of its own and reads the reply.
func do(t *testing.T, method, u, contentType, body string, header ...string) reply {
	t.Helper()
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Add(header[i], header[i+1])
	}
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return reply{resp.StatusCode, resp.Header, string(b)}
}

// oneClick POSTs RFC 8058's body to u.
func oneClick(t *testing.T, u string) reply {
	t.Helper()
	return do(t, http.MethodPost, u, "application/x-www-form-urlencoded", url.Values{"List-Unsubscribe": {"One-Click"}}.Encode())
}

// members is every list's members, to compare before and after.
func (f *fixture) members(t *testing.T) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, l := range []string{announce, staff} {
		m, err := f.store.Members(context.Background(), l)
		if err != nil {
			t.Fatal(err)
		}
		out[l] = m
	}
	return out
}

func (f *fixture) wantMembers(t *testing.T, want map[string][]string) {
	t.Helper()
	if diff := cmp.Diff(want, f.members(t)); diff != "" {
		t.Errorf("members -want +got:\n%s", diff)
	}
}

// everyone is the fixture's members before any change (ordered by
// domain, then address, as the store returns them).
// everyoneBut is everyone with member gone from list.
func everyoneBut(list, member string) map[string][]string {
	m := everyone()
	m[list] = slices.DeleteFunc(m[list], func(a string) bool { return a == member })
	return m
}

func everyone() map[string][]string {
	return map[string][]string{
		announce: {"alice@example.com", "bob@example.com", "carol@example.net"},
		staff:    {"alice@example.com", "dave@example.com"},
	}
}
