package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// The fallback tier with two real servers. A first-attempt node makes
// one attempt at a destination that is down and hands every deferred
// recipient to its fallback host at once, so its own spool is empty;
// the fallback host, which relays for it as a peer, keeps them and
// delivers them once the destination recovers, each once, from the
// list's bounce address. The fallback host refuses to relay for anyone
// else with 550 5.7.1. The fallback host knows its peer by its address,
// or by the client certificate it presents over STARTTLS.
func TestFallbackTier(t *testing.T) {
	t.Run("peer by address", func(t *testing.T) {
		// The first-attempt node dials from 127.0.0.1.
		fallbackTier(t, "[relay]\npeers = [\"127.0.0.1\"]\n", "")
	})
	t.Run("peer by certificate", func(t *testing.T) {
		dir := t.TempDir()
		fcert, fkey := filepath.Join(dir, "fallback.pem"), filepath.Join(dir, "fallback.key")
		cert, key := filepath.Join(dir, "first.pem"), filepath.Join(dir, "first.key")
		writeCert(t, fcert, fkey, 1)
		writeCert(t, cert, key, 2)
		block, _ := pem.Decode([]byte(readFile(t, cert)))
		fp := sha256.Sum256(block.Bytes)
		fallbackTier(t,
			fmt.Sprintf("[tls]\ncert = %q\nkey = %q\n[relay]\npeer_certs = [%q]\n", fcert, fkey, hex.EncodeToString(fp[:])),
			fmt.Sprintf("[tls]\ncert = %q\nkey = %q\n", cert, key))
	})
}

func fallbackTier(t *testing.T, fallbackExtra, firstExtra string) {
	n, down := newDeferringNet(t, testDomains(1), smtp.EnhancedCode{4, 3, 0}, "down for maintenance")
	fallbackCfg := n.writeConfig(t, t.TempDir(), fallbackExtra+`
[queue]
retry_min = "200ms"
retry_max = "500ms"
`)
	fallback := startFanmail(t, fallbackCfg)

	firstCfg := n.writeConfigDelivery(t, t.TempDir(), fmt.Sprintf(`recipients_per_transaction = 1000
fallback_relay = %q
fallback_policy = "after_first_attempt"`, fallback.addr), firstExtra+`
[queue]
retry_min = "1h"
retry_max = "4h"
`)
	members := makeList(t, firstCfg, "news@lists.test", testDomains(1), []int{20})
	first := startFanmail(t, firstCfg)
	qid := postTo(t, first.addr, "poster@example.org", "news@lists.test", "Subject: through the fallback\r\n\r\nhello\r\n")

	// One attempt at the MX, then everything to the fallback host: the
	// first-attempt node is done with the post.
	if !waitLog(first, "msg=\"message done\" qid="+qid) {
		first.dumpLog(t)
		t.Fatal("the first-attempt node kept the post")
	}
	if got := strings.Count(first.log.String(), "via fallback relay"); got != len(members) {
		t.Errorf("the first-attempt node handed %d recipients to the fallback host, want %d", got, len(members))
	}
	if n.delivered() != 0 {
		t.Fatalf("%d delivered while the destination is down", n.delivered())
	}
	// The fallback host tries, is deferred, and keeps them.
	if !waitLog(fallback, "down for maintenance") {
		fallback.dumpLog(t)
		t.Fatal("the fallback host never tried the destination")
	}

	// Nobody else may relay through the fallback host.
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.3.1")}, Timeout: 5 * time.Second}
	nc, err := d.Dial("tcp", fallback.addr)
	if err != nil {
		t.Fatal(err)
	}
	c := smtp.NewClient(nc)
	defer c.Close()
	if err := c.Hello("stranger.example.org"); err != nil {
		t.Fatal(err)
	}
	if err := c.Mail("spammer@example.org", nil); err != nil {
		t.Fatal(err)
	}
	err = c.Rcpt("member0000@d00.test", nil)
	if se, ok := err.(*smtp.SMTPError); !ok || se.Code != 550 || se.EnhancedCode != (smtp.EnhancedCode{5, 7, 1}) {
		t.Errorf("relay attempt from a non-peer: %v, want 550 5.7.1", err)
	}
	c.Quit()

	down.Store(false)
	n.waitDelivered(t, len(members), 30*time.Second, fallback)
	n.wantEachOnce(t, members)
	for _, del := range n.sinks["d00.test"].Deliveries() {
		if del.From != "news-bounces@lists.test" {
			t.Errorf("delivered from <%s>, want the list's bounce address", del.From)
		}
		if strings.Count(string(del.Data), "(fanmail) with ESMTP") != 2 {
			t.Errorf("want a Received header from each node:\n%s", del.Data)
		}
	}
	first.stop(t)
	fallback.stop(t)
}
