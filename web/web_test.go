package web

import (
	"bytes"
	"context"
	"encoding/base64"
	"mime/multipart"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"fanmail/unsubscribe"
)

func TestOneClickRemovesExactlyThatMember(t *testing.T) {
	f := newFixture(t, nil)
	r := oneClick(t, f.link(t, announce, "bob@example.com"))
	if r.code != http.StatusOK || r.body != "bob@example.com is unsubscribed from announce@example.org.\n" {
		t.Errorf("one-click POST: %d %q", r.code, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "text/plain; charset=utf-8" {
		t.Errorf("Content-Type %q", ct)
	}
	if r.header.Get("Location") != "" {
		t.Errorf("one-click answer redirects to %q; RFC 8058 §3.2 wants no redirect", r.header.Get("Location"))
	}
	want := everyoneBut(announce, "bob@example.com")
	f.wantMembers(t, want)
	if !strings.Contains(f.log.String(), `msg=unsubscribed list=announce@example.org member=bob@example.com remote=127.0.0.1`) {
		t.Errorf("no unsubscribed line with list, member and remote in the log:\n%s", f.log)
	}

	// Another list's token for a member of both lists acts on that list
	// only.
	if r := oneClick(t, f.link(t, staff, "alice@example.com")); r.code != http.StatusOK {
		t.Errorf("staff one-click: %d %q", r.code, r.body)
	}
	want[staff] = []string{"dave@example.com"}
	f.wantMembers(t, want)
}

func TestOneClickMultipart(t *testing.T) {
	f := newFixture(t, nil)
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	mw.WriteField("List-Unsubscribe", "One-Click")
	mw.Close()
	r := do(t, http.MethodPost, f.link(t, announce, "carol@example.net"), mw.FormDataContentType(), body.String())
	if r.code != http.StatusOK {
		t.Fatalf("multipart one-click: %d %q", r.code, r.body)
	}
	f.wantMembers(t, everyoneBut(announce, "carol@example.net"))
}

// Internationalized addresses (RFC 6531) travel in the token as UTF-8
// and come back out exact.
func TestOneClickUTF8Member(t *testing.T) {
	f := newFixture(t, nil)
	member := "jürgen@münchen.example"
	if _, err := f.store.AddMembers(context.Background(), announce, []string{member}); err != nil {
		t.Fatal(err)
	}
	r := oneClick(t, f.link(t, announce, member))
	if r.code != http.StatusOK || r.body != member+" is unsubscribed from announce@example.org.\n" {
		t.Errorf("one-click for %s: %d %q", member, r.code, r.body)
	}
	f.wantMembers(t, everyone())
}

// A second POST of the same link, as a provider's retry would make, is
// answered 200 too, and changes nothing.
func TestOneClickIdempotent(t *testing.T) {
	f := newFixture(t, nil)
	link := f.link(t, announce, "alice@example.com")
	oneClick(t, link)
	r := oneClick(t, link)
	if r.code != http.StatusOK || !strings.Contains(r.body, "not subscribed") {
		t.Errorf("second one-click: %d %q, want 200 saying not subscribed", r.code, r.body)
	}
	f.wantMembers(t, everyoneBut(announce, "alice@example.com"))
}

// The decision the unsubscribe package documents: a token is not bound
// to one subscription, so the link in a message received before the
// member unsubscribed and subscribed again still removes them.
func TestOldLinkAfterResubscribeUnsubscribesAgain(t *testing.T) {
	f := newFixture(t, nil)
	link := f.link(t, announce, "alice@example.com")
	oneClick(t, link)
	if _, err := f.store.AddMembers(context.Background(), announce, []string{"alice@example.com"}); err != nil {
		t.Fatal(err)
	}
	f.wantMembers(t, everyone())
	if r := oneClick(t, link); r.code != http.StatusOK || !strings.Contains(r.body, "is unsubscribed") {
		t.Errorf("old link after re-subscribing: %d %q, want the member removed again", r.code, r.body)
	}
	f.wantMembers(t, everyoneBut(announce, "alice@example.com"))
}

// Link scanners GET every link: a GET, or a HEAD, shows a page and
// never unsubscribes.
func TestGetDoesNotUnsubscribe(t *testing.T) {
	f := newFixture(t, nil)
	link := f.link(t, announce, "alice@example.com")
	for _, method := range []string{http.MethodGet, http.MethodHead} {
		r := do(t, method, link, "", "")
		if r.code != http.StatusOK {
			t.Errorf("%s: %d %q", method, r.code, r.body)
		}
		if ct := r.header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
			t.Errorf("%s: Content-Type %q", method, ct)
		}
	}
	f.wantMembers(t, everyone())
	r := do(t, http.MethodGet, link, "", "")
	for _, want := range []string{
		`<form method="post">`,
		`<input type="hidden" name="List-Unsubscribe" value="One-Click">`,
		"<strong>announce@example.org</strong>", "<strong>alice@example.com</strong>",
	} {
		if !strings.Contains(r.body, want) {
			t.Errorf("page lacks %q:\n%s", want, r.body)
		}
	}
	for h, want := range map[string]string{
		"Cache-Control":   "no-store",
		"Referrer-Policy": "no-referrer",
	} {
		if got := r.header.Get(h); got != want {
			t.Errorf("%s: %q, want %q", h, got, want)
		}
	}
	if csp := r.header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("Content-Security-Policy %q", csp)
	}
	// The button posts what a provider posts, to the same URL.
	if r := oneClick(t, link); r.code != http.StatusOK {
		t.Errorf("the page's POST: %d %q", r.code, r.body)
	}
}

// Addresses on the page are escaped: a quoted local part may hold <>.
func TestPageEscapes(t *testing.T) {
	f := newFixture(t, nil)
	member := `"<b>x</b>"@example.com`
	if _, err := f.store.AddMembers(context.Background(), announce, []string{member}); err != nil {
		t.Fatal(err)
	}
	r := do(t, http.MethodGet, f.link(t, announce, member), "", "")
	if r.code != http.StatusOK || strings.Contains(r.body, "<b>x</b>") || !strings.Contains(r.body, "&lt;b&gt;x&lt;/b&gt;") {
		t.Errorf("page for %s: %d\n%s", member, r.code, r.body)
	}
}

func TestBadLinksChangeNothing(t *testing.T) {
	f := newFixture(t, nil)
	good := strings.TrimPrefix(f.link(t, announce, "alice@example.com"), f.base+unsubscribe.PathPrefix)
	raw, err := base64.RawURLEncoding.DecodeString(good)
	if err != nil {
		t.Fatal(err)
	}
	flip := func(i int) string {
		b := append([]byte(nil), raw...)
		b[i] ^= 0x20
		return base64.RawURLEncoding.EncodeToString(b)
	}
	// Another server's key, same id: a forgery with a well-formed token.
	strangerKeys, err := unsubscribe.Open(filepath.Join(t.TempDir(), "keys"))
	if err != nil {
		t.Fatal(err)
	}
	forged, _ := strangerKeys.Mint(announce, "alice@example.com")
	otherList := strings.TrimPrefix(f.link(t, staff, "alice@example.com"), f.base+unsubscribe.PathPrefix)
	rawOther, _ := base64.RawURLEncoding.DecodeString(otherList)
	// staff's addresses with announce's MAC.
	spliced := base64.RawURLEncoding.EncodeToString(append(rawOther[:len(rawOther)-16:len(rawOther)-16], raw[len(raw)-16:]...))
	// bad.example's addresses signed by this server's key: the token is
	// genuine, but names an address that does not parse.
	unparsable, _ := f.keys.Mint(announce, "no at sign")

	tokens := map[string]string{
		"garbage":                 "x",
		"forged":                  forged,
		"member address changed":  flip(25),
		"list address changed":    flip(3),
		"MAC changed":             flip(len(raw) - 1),
		"truncated":               good[:len(good)-4],
		"other list's addresses":  spliced,
		"not base64url":           good[:20] + "%2B" + good[21:],
		"too long":                strings.Repeat("A", unsubscribe.MaxTokenLen+1),
		"genuine, bad address":    unparsable,
		"genuine with a trailing": good + "A",
	}
	for name, tok := range tokens {
		for _, method := range []string{http.MethodPost, http.MethodGet} {
			u := f.base + unsubscribe.PathPrefix + tok
			var r reply
			if method == http.MethodPost {
				r = oneClick(t, u)
			} else {
				r = do(t, method, u, "", "")
			}
			if r.code != http.StatusBadRequest || !strings.Contains(r.body, "not valid") {
				t.Errorf("%s: %s: %d %q, want 400 saying the link is not valid", name, method, r.code, r.body)
			}
		}
	}
	f.wantMembers(t, everyone())
	if !strings.Contains(f.log.String(), "signature does not match") {
		t.Errorf("the log does not say why a forged link was refused:\n%s", f.log)
	}
}

// RFC 8058 §3.1's body, as form data in the body, is required: a bare
// POST, another body, the field in the query string, or another content
// type changes nothing.
func TestPostNeedsTheOneClickBody(t *testing.T) {
	f := newFixture(t, nil)
	link := f.link(t, announce, "alice@example.com")
	form := "application/x-www-form-urlencoded"
	tests := []struct {
		name, url, contentType, body string
		code                         int
	}{
		{"empty body", link, form, "", http.StatusBadRequest},
		{"other value", link, form, "List-Unsubscribe=Yes", http.StatusBadRequest},
		{"other field", link, form, "unsubscribe=One-Click", http.StatusBadRequest},
		{"query string only", link + "?List-Unsubscribe=One-Click", form, "", http.StatusBadRequest},
		{"bad form", link, form, "List-Unsubscribe=%zz", http.StatusBadRequest},
		{"text/plain", link, "text/plain", "List-Unsubscribe=One-Click", http.StatusUnsupportedMediaType},
		{"no content type", link, "", "List-Unsubscribe=One-Click", http.StatusUnsupportedMediaType},
		{"JSON", link, "application/json", `{"List-Unsubscribe":"One-Click"}`, http.StatusUnsupportedMediaType},
		{"over the body limit", link, form, "List-Unsubscribe=One-Click&pad=" + strings.Repeat("x", 9000), http.StatusRequestEntityTooLarge},
	}
	for _, tt := range tests {
		r := do(t, http.MethodPost, tt.url, tt.contentType, tt.body)
		if r.code != tt.code {
			t.Errorf("%s: %d %q, want %d", tt.name, r.code, r.body, tt.code)
		}
	}
	f.wantMembers(t, everyone())
}

func TestOtherPathsAndMethods(t *testing.T) {
	f := newFixture(t, nil)
	link := f.link(t, announce, "alice@example.com")
	tests := []struct {
		method, url string
		code        int
	}{
		{http.MethodPut, link, http.StatusMethodNotAllowed},
		{http.MethodDelete, link, http.StatusMethodNotAllowed},
		{http.MethodGet, f.base + "/", http.StatusNotFound},
		{http.MethodGet, f.base + "/u/", http.StatusNotFound},
		{http.MethodPost, link + "/more", http.StatusNotFound},
		{http.MethodGet, f.base + "/metrics", http.StatusNotFound},
	}
	for _, tt := range tests {
		r := do(t, tt.method, tt.url, "application/x-www-form-urlencoded", "List-Unsubscribe=One-Click")
		if r.code != tt.code {
			t.Errorf("%s %s: %d %q, want %d", tt.method, tt.url, r.code, r.body, tt.code)
		}
		if tt.code == http.StatusMethodNotAllowed && r.header.Get("Allow") != "GET, HEAD, POST" {
			t.Errorf("%s: Allow %q", tt.method, r.header.Get("Allow"))
		}
	}
	f.wantMembers(t, everyone())
}

// A list deleted since the mail went out: the member gets no more mail
// from it, which is what they asked; 200.
func TestDeletedList(t *testing.T) {
	f := newFixture(t, nil)
	link := f.link(t, staff, "dave@example.com")
	if err := f.store.DeleteList(context.Background(), staff); err != nil {
		t.Fatal(err)
	}
	if r := oneClick(t, link); r.code != http.StatusOK || !strings.Contains(r.body, "no longer exists") {
		t.Errorf("one-click on a deleted list: %d %q", r.code, r.body)
	}
}

// When the store fails, the answer is 503 with Retry-After, and the
// failure is logged with the member.
func TestStoreFailure(t *testing.T) {
	f := newFixture(t, nil)
	link := f.link(t, announce, "alice@example.com")
	f.store.Close()
	r := oneClick(t, link)
	if r.code != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" {
		t.Errorf("one-click with the store closed: %d %q, Retry-After %q", r.code, r.body, r.header.Get("Retry-After"))
	}
	if !strings.Contains(f.log.String(), `msg="unsubscribe failed" list=announce@example.org member=alice@example.com`) {
		t.Errorf("failure not logged:\n%s", f.log)
	}
}
