package main

import (
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"fanmail/unsubscribe"
)

var webListenRE = regexp.MustCompile(`msg="web endpoint started" listen=(\S+)`)

// webConfig turns the web endpoint on, on a free loopback port, its links
// pointing back to loopback.
const webConfig = "[web]\nlisten = \"127.0.0.1:0\"\nbase_url = \"http://127.0.0.1\"\n"

// webRequest sends one request to the running server's web endpoint.
func webRequest(t *testing.T, method, u, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestOneClickUnsubscribeEndToEnd runs the binary with [web] listen set:
// the key is created in the data directory, a GET of a member's link
// changes nothing, a tampered link is refused, the one-click POST
// removes exactly that member, and the next post no longer reaches them.
func TestOneClickUnsubscribeEndToEnd(t *testing.T) {
	t.Parallel()
	domains := []string{"d00.test", "d01.test"}
	n := newFakeNet(t, domains, nil)
	dataDir := filepath.Join(t.TempDir(), "data")
	cfg := n.writeConfig(t, dataDir, webConfig)
	members := makeList(t, cfg, e2eList, domains, []int{2, 2})
	gone := members[1] // member0001@d00.test

	p := startFanmail(t, cfg)
	base := p.httpBase(t, webListenRE, "web endpoint")

	keyFile := filepath.Join(dataDir, "unsubscribe-keys", "1.key")
	if fi, err := os.Stat(keyFile); err != nil || fi.Mode().Perm() != 0o600 || fi.Size() != unsubscribe.KeySize {
		t.Fatalf("key file %s: %v, %v; want 32 octets, mode 0600", keyFile, fi, err)
	}
	// Tokens the server accepts are the ones its key signs: mint with
	// the same key directory, as delivery will.
	keys, err := unsubscribe.Open(filepath.Join(dataDir, "unsubscribe-keys"))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := keys.Mint(e2eList, gone)
	if err != nil {
		t.Fatal(err)
	}
	link := unsubscribe.URL(base, tok)
	memberLs := func() []string {
		return strings.Fields(fanmailCLI(t, cfg, "", "member", "ls", e2eList))
	}

	if code, body := webRequest(t, http.MethodGet, link, ""); code != http.StatusOK || !strings.Contains(body, `<form method="post">`) {
		t.Errorf("GET: %d %q", code, body)
	}
	c := "A"
	if tok[10] == 'A' {
		c = "B"
	}
	tampered := tok[:10] + c + tok[11:]
	body := url.Values{"List-Unsubscribe": {"One-Click"}}.Encode()
	if code, _ := webRequest(t, http.MethodPost, unsubscribe.URL(base, tampered), body); code != http.StatusBadRequest {
		t.Errorf("tampered POST: %d, want 400", code)
	}
	if diff := cmp.Diff(members, memberLs()); diff != "" {
		t.Fatalf("members after a GET and a tampered POST (-want +got):\n%s", diff)
	}

	if code, body := webRequest(t, http.MethodPost, link, body); code != http.StatusOK || !strings.Contains(body, "is unsubscribed") {
		t.Fatalf("one-click POST: %d %q", code, body)
	}
	rest := []string{members[0], members[2], members[3]}
	if diff := cmp.Diff(rest, memberLs()); diff != "" {
		t.Fatalf("members after the one-click POST (-want +got):\n%s", diff)
	}

	postTo(t, p.addr, "poster@example.org", e2eList, e2ePost)
	n.waitDelivered(t, len(rest), 30*time.Second, p)
	time.Sleep(200 * time.Millisecond) // a delivery to the removed member would show
	got := n.wantEachOnce(t, rest)
	if got[gone] != 0 {
		t.Errorf("%s got the post after unsubscribing", gone)
	}

	p.stop(t)
	if !strings.Contains(p.log.String(), `msg=unsubscribed list=`+e2eList+` member=`+gone+` remote=127.0.0.1`) {
		t.Errorf("no unsubscribed line in the log:\n%s", p.log)
	}
	if _, err := http.Get(link); err == nil {
		t.Error("the web endpoint still answers after the server stopped")
	}
}

// A bad [web] config, or a key open to other users, stops serve at once
// with an error naming the key or the file.
func TestWebConfigErrorsStopServe(t *testing.T) {
	t.Parallel()
	n := newFakeNet(t, []string{"d00.test"}, nil)
	dataDir := filepath.Join(t.TempDir(), "data")
	tests := []struct{ extra, want string }{
		{"[web]\nlisten = \"127.0.0.1:0\"\nbase_url = \"http://lists.example.org\"\n", "web.base_url: \"http://lists.example.org\" is plain http"},
		{"[web]\nlisten = \"127.0.0.1:0\"\n", "web.base_url: not set"},
		{"[web]\nlisten = \"127.0.0.1:0\"\nbase_url = \"https://lists.example.org\"\n", filepath.Join(dataDir, "unsubscribe-keys", "1.key") + " has mode 0644"},
	}
	keys := filepath.Join(dataDir, "unsubscribe-keys")
	if err := os.MkdirAll(keys, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(keys, "1.key"), make([]byte, unsubscribe.KeySize), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		cfg := n.writeConfig(t, dataDir, tt.extra)
		out, err := exec.Command(fanmailBinary(t), "--config", cfg, "serve").CombinedOutput()
		if err == nil || !strings.Contains(string(out), tt.want) {
			t.Errorf("serve with %q: %v\n%s\nwant an error saying %q", tt.extra, err, out, tt.want)
		}
	}
}
