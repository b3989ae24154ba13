package main

// Per-member copies end to end: the real binary, lists set to
// personalize=verp and full, members at in-process sinks.

import (
	"bytes"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-message"
	"github.com/google/go-cmp/cmp"

	"fanmail/internal/dkimpy"
	"fanmail/internal/fakenet"
)

// deliveriesTo returns every transaction the sinks took, by recipient.
func (n *fakeNet) deliveriesBy() map[string][]fakenet.Delivery {
	out := map[string][]fakenet.Delivery{}
	for _, s := range n.sinks {
		for _, d := range s.Deliveries() {
			for _, r := range d.Recipients {
				out[r] = append(out[r], d)
			}
		}
	}
	return out
}

// TestVERPEndToEnd: with personalize=verp each member gets its copy in a
// transaction of its own whose envelope sender is its VERP bounce
// address, every domain's members over one connection, and the copy is
// the list's (signed once, the same for all).
func TestVERPEndToEnd(t *testing.T) {
	t.Parallel()
	domains := []string{"d00.test", "d01.test"}
	n := newFakeNet(t, domains, nil)
	cfg := n.newConfig(t, "")
	members := makeList(t, cfg, e2eList, domains, []int{3, 2})
	fanmailCLI(t, cfg, "", "list", "set", e2eList, "personalize=verp")
	p := startFanmail(t, cfg)
	postTo(t, p.addr, "poster@example.org", e2eList, e2ePost)
	n.waitDelivered(t, len(members), 30*time.Second, p)
	p.stop(t)

	by := n.deliveriesBy()
	var bodies [][]byte
	for _, m := range members {
		ds := by[m]
		if len(ds) != 1 {
			t.Fatalf("%s got %d copies, want 1", m, len(ds))
		}
		local, domain, _ := strings.Cut(m, "@")
		want := "announce-bounces+" + local + "=" + domain + "@lists.example.org"
		if ds[0].From != want || len(ds[0].Recipients) != 1 {
			t.Errorf("%s: MAIL FROM %q with %d recipients, want %q alone", m, ds[0].From, len(ds[0].Recipients), want)
		}
		bodies = append(bodies, ds[0].Data)
	}
	for _, b := range bodies[1:] {
		if !bytes.Equal(b, bodies[0]) {
			t.Errorf("verp copies differ:\n%s\n---\n%s", bodies[0], b)
		}
	}
	for d, s := range n.sinks {
		if st := s.Stats(); st.Connections != 1 {
			t.Errorf("%s: %d connections, want the members' transactions on one", d, st.Connections)
		}
	}
}

var linkRE = regexp.MustCompile(`<(http://127\.0\.0\.1/u/([A-Za-z0-9_-]+))>`)

// TestFullEndToEnd: with personalize=full, [web] base_url and DKIM keys,
// each member's copy carries its own List-Unsubscribe (one-click link and
// mailto) and List-Unsubscribe-Post under its own signatures, which
// dkimpy and go-msgauth verify; POSTing one member's link unsubscribes
// exactly that member.
func TestFullEndToEnd(t *testing.T) {
	t.Parallel()
	domains := []string{"d00.test", "d01.test"}
	n := newFakeNet(t, domains, nil)
	cfg := n.newConfig(t, webConfig)
	records := map[string]string{}
	for _, alg := range []string{"rsa", "ed25519"} {
		name, value := n.keygen(t, cfg, "lists.example.org", alg)
		records[name] = value
	}
	members := makeList(t, cfg, e2eList, domains, []int{2, 2})
	fanmailCLI(t, cfg, "", "list", "set", e2eList, "personalize=full", "footer=-- \nannounce mailing list")
	p := startFanmail(t, cfg)
	base := p.httpBase(t, webListenRE, "web endpoint")
	postTo(t, p.addr, "poster@example.org", e2eList, e2ePost)
	n.waitDelivered(t, len(members), 30*time.Second, p)

	py := dkimpy.Python(t)
	by := n.deliveriesBy()
	links := map[string]string{}
	for _, mem := range members {
		ds := by[mem]
		if len(ds) != 1 {
			t.Fatalf("%s got %d copies, want 1", mem, len(ds))
		}
		got := ds[0].Data
		e, err := message.Read(bytes.NewReader(got))
		if err != nil {
			t.Fatal(err)
		}
		h := e.Header
		lu := h.Get("List-Unsubscribe")
		lm := linkRE.FindStringSubmatch(lu)
		if lm == nil || !strings.HasSuffix(lu, "<mailto:announce-request@lists.example.org?subject=unsubscribe>") {
			t.Fatalf("%s: List-Unsubscribe %q", mem, lu)
		}
		links[mem] = lm[2]
		if v := h.Get("List-Unsubscribe-Post"); v != "List-Unsubscribe=One-Click" || len(h.Values("List-Unsubscribe")) != 1 {
			t.Errorf("%s: List-Unsubscribe-Post %q, %d List-Unsubscribe fields", mem, v, len(h.Values("List-Unsubscribe")))
		}
		for _, v := range n.verifyListDKIM(t, py, records, got) {
			for _, f := range []string{"list-unsubscribe", "list-unsubscribe-post", "from", "list-id"} {
				if !slices.ContainsFunc(v.HeaderKeys, func(k string) bool { return strings.EqualFold(k, f) }) {
					t.Errorf("%s: signature does not cover %s: h=%v", mem, f, v.HeaderKeys)
				}
			}
		}
	}
	if links[members[0]] == links[members[1]] {
		t.Fatal("two members got the same link")
	}
	gone := members[1]
	body := url.Values{"List-Unsubscribe": {"One-Click"}}.Encode()
	if code, resp := webRequest(t, http.MethodPost, base+"/u/"+links[gone], body); code != http.StatusOK {
		t.Fatalf("one-click POST of %s's link: %d %q", gone, code, resp)
	}
	rest := slices.DeleteFunc(slices.Clone(members), func(s string) bool { return s == gone })
	if diff := cmp.Diff(rest, strings.Fields(fanmailCLI(t, cfg, "", "member", "ls", e2eList))); diff != "" {
		t.Errorf("members after %s's one-click POST (-want +got):\n%s", gone, diff)
	}
	p.stop(t)
	if c := strings.Count(p.log.String(), "status=sent"); c != len(members) {
		t.Errorf("%d status=sent lines, want %d", c, len(members))
	}
}
