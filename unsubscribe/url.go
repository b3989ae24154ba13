package unsubscribe

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strings"
)

// PathPrefix is where tokens are served under a base URL: BASE/u/TOKEN.
const PathPrefix = "/u/"

// MaxBaseURLLen is the longest base URL: with the longest token,
// "List-Unsubscribe: <BASE/u/TOKEN>" stays within RFC 5322's 998
// characters per line, which an unfoldable URL must.
const MaxBaseURLLen = 256

// URL is the one-click link for token under base, a URL that
// ParseBaseURL accepted.
func URL(base, token string) string {
	return base + PathPrefix + token
}

// ParseBaseURL checks the public URL prefix of the one-click links and
// returns it without a trailing slash. It must be an absolute https URL
// (RFC 8058 §3.1 requires HTTPS), or http for a loopback host, which
// only tests and local setups reach; with a host, no user, query or
// fragment, and only ASCII that may stand inside the <> of a header
// field (RFC 2369 §2): no blank, no control character, no <, >, " or
// comma.
func ParseBaseURL(s string) (string, error) {
	if s == "" {
		return "", errors.New("not set; give the public https URL the web endpoint is reached at, e.g. \"https://lists.example.org\"")
	}
	if len(s) > MaxBaseURLLen {
		return "", fmt.Errorf("%d characters, more than %d: the link must fit on one header line", len(s), MaxBaseURLLen)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f || strings.IndexByte(`<>",`, c) >= 0 {
			return "", fmt.Errorf("%q has %q at offset %d, which cannot stand in a header's <URL>; percent-encode it", s, c, i)
		}
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", fmt.Errorf("%q is not a URL: %v", s, err)
	}
	switch {
	case u.Scheme != "https" && u.Scheme != "http":
		return "", fmt.Errorf("%q is not an absolute https URL such as \"https://lists.example.org\"", s)
	case u.Host == "" || u.Opaque != "":
		return "", fmt.Errorf("%q has no host; write it as \"https://lists.example.org\"", s)
	case u.User != nil:
		return "", fmt.Errorf("%q carries a user name or password; leave them out", s)
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(s, "#"):
		return "", fmt.Errorf("%q has a query or fragment; the token is appended to the path", s)
	case u.Scheme == "http" && !loopback(u.Hostname()):
		return "", fmt.Errorf("%q is plain http: RFC 8058 requires https (http only for a loopback host); put a TLS reverse proxy in front", s)
	}
	return strings.TrimRight(s, "/"), nil
}

func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}
