package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	msgauth "github.com/emersion/go-msgauth/dkim"
	"github.com/miekg/dns"

	"fanmail/dkim"
	"fanmail/internal/fakenet"
)

// zoneRecord returns the TXT record keygen printed: what follows the
// first blank line of its output.
func zoneRecord(t *testing.T, stdout string) string {
	t.Helper()
	_, rec, ok := strings.Cut(stdout, "\n\n")
	if !ok {
		t.Fatalf("no record in keygen output:\n%s", stdout)
	}
	return strings.TrimSuffix(rec, "\n")
}

// TestDKIMKeygenPublishVerify is the whole path an admin takes: keygen,
// paste the printed record into a zone (served here by a real DNS server
// on loopback), sign with the keyring the server loads, and a verifier
// that looks the key up in that DNS accepts the signature.
func TestDKIMKeygenPublishVerify(t *testing.T) {
	data := t.TempDir()
	zone, err := fakenet.NewDNS("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { zone.Close() })

	for _, alg := range []string{"rsa", "ed25519"} {
		stdout := mustRun(t, data, "dkim", "keygen", "Lists.Example.ORG", "--algorithm", alg)
		if err := zone.AddRR(zoneRecord(t, stdout)); err != nil {
			t.Fatalf("the printed record is not zone-file syntax: %v\n%s", err, stdout)
		}
	}
	kr, err := dkim.LoadKeyring(dkim.KeyDir(data), nil)
	if err != nil {
		t.Fatal(err)
	}
	header := "From: announce@lists.example.org\r\nTo: announce@lists.example.org\r\nSubject: hi\r\n"
	body := "Hello.\r\n"
	bh, _ := dkim.HashBody(strings.NewReader(body))
	sig, err := kr.For("lists.example.org").Sign([]byte(header), bh)
	if err != nil {
		t.Fatal(err)
	}
	verifs, err := msgauth.VerifyWithOptions(strings.NewReader(sig+header+"\r\n"+body), &msgauth.VerifyOptions{
		LookupTXT: func(name string) ([]string, error) { return lookupTXT(zone.Addr(), name) },
	})
	if err != nil || len(verifs) != 2 {
		t.Fatalf("%d verifications, %v", len(verifs), err)
	}
	for _, v := range verifs {
		if v.Err != nil {
			t.Errorf("%s: %v", v.Domain, v.Err)
		}
	}
}

// lookupTXT asks the DNS server at addr for name's TXT records, joining
// each record's strings as net.LookupTXT does. It asks with EDNS0, as
// resolvers do: the fake server does not truncate answers over 512 octets.
func lookupTXT(addr, name string) ([]string, error) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), dns.TypeTXT)
	m.SetEdns0(4096, false) // an RSA-2048 record does not fit in 512 octets, as resolvers expect
	c := &dns.Client{Timeout: 2 * time.Second}
	r, _, err := c.Exchange(m, addr)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, rr := range r.Answer {
		if txt, ok := rr.(*dns.TXT); ok {
			out = append(out, strings.Join(txt.Txt, ""))
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no TXT record for %s (rcode %s)", name, dns.RcodeToString[r.Rcode])
	}
	return out, nil
}

func TestDKIMCommands(t *testing.T) {
	data := t.TempDir()
	dir := filepath.Join(data, "dkim", "example.org")
	year := time.Now().UTC().Year()
	defSel := fmt.Sprintf("fm%da", year)
	runSteps(t, data, []step{
		{args: []string{"dkim", "ls"}, stdout: out(""), stderr: out("no DKIM keys yet in $DATA/dkim (create one with: fanmail dkim keygen DOMAIN)\n")},
		{args: []string{"dkim", "keygen", "example.org", "--algorithm=ed25519"}},
		{args: []string{"dkim", "keygen", "example.org", "--selector", "Mail2", "--algorithm", "ed25519"}},
		{args: []string{"dkim", "keygen", "example.org", "--selector", "mail2", "--algorithm", "ed25519"},
			wantErr: filepath.Join(dir, "mail2.key") + " already exists: give --force to replace it"},
		{args: []string{"dkim", "keygen", "--force", "example.org", "--selector", "mail2", "--algorithm", "ed25519"}},
		{args: []string{"dkim", "keygen", "example.org", "--selector", "mail2", "--force", "--algorithm", "ed25519"}},
		{args: []string{"dkim", "ls", "x"}, wantErr: "dkim ls: takes no arguments"},
	})
	// mail2 was written last: it signs; the default-selector key does not.
	os.Chtimes(filepath.Join(dir, defSel+".key"), time.Now().Add(-time.Hour), time.Now().Add(-time.Hour))
	kr, err := dkim.LoadKeyring(filepath.Join(data, "dkim"), nil)
	if err != nil {
		t.Fatal(err)
	}
	keys := kr.Keys()
	want := fmt.Sprintf("DOMAIN       SELECTOR  ALGORITHM  SIGNS              FILE\n"+
		"example.org  %s   ed25519    no (an older key)  %s\n"+
		"example.org  mail2     ed25519    yes                %s\n"+
		"\n%s\n\n%s\n", defSel, keys[0].File, keys[1].File, keys[0].Record().Zone(), keys[1].Record().Zone())
	runSteps(t, data, []step{{args: []string{"dkim", "ls"}, stdout: &want, stderr: out("")}})

	// A key others can read: ls still shows the good one, and fails
	// naming the file and the fix.
	bad := filepath.Join(dir, defSel+".key")
	os.Chmod(bad, 0o644)
	want = fmt.Sprintf("DOMAIN       SELECTOR  ALGORITHM  SIGNS  FILE\n"+
		"example.org  mail2     ed25519    yes    %s\n\n%s\n", keys[1].File, keys[1].Record().Zone())
	runSteps(t, data, []step{{args: []string{"dkim", "ls"}, stdout: &want,
		wantErr: "DKIM keys in " + filepath.Join(data, "dkim") + ":\n" + bad + ": mode 0644 lets group or others read the private key: chmod 600 " + bad}})
}

// TestDKIMKeygenBadInput: a clear error, and nothing written.
func TestDKIMKeygenBadInput(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"dkim", "keygen"}, "dkim keygen: give exactly one DOMAIN, e.g. fanmail dkim keygen lists.example.org"},
		{[]string{"dkim", "keygen", "a.org", "b.org"}, "dkim keygen: give exactly one DOMAIN"},
		{[]string{"dkim", "keygen", "localhost"}, `dkim keygen: domain "localhost": a single label; give the full domain mail comes from, e.g. example.org`},
		{[]string{"dkim", "keygen", "ex_ample.org"}, `dkim keygen: domain "ex_ample.org": '_' in label "ex_ample": only letters, digits and hyphens`},
		{[]string{"dkim", "keygen", "example.org", "--algorithm", "dsa"}, `dkim keygen: algorithm "dsa": use rsa (2048 bits, verified everywhere) or ed25519`},
		{[]string{"dkim", "keygen", "example.org", "--selector", "a b"}, `dkim keygen: selector "a b": ' ' in label "a b"`},
		{[]string{"dkim", "keygen", "example.org", "--selector"}, "dkim keygen: option --selector needs a value"},
		{[]string{"dkim", "keygen", "example.org", "--bits", "4096"}, "dkim keygen: unknown option --bits"},
	} {
		data := t.TempDir()
		stdout, _, err := run(t, data, "", tt.args...)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("fanmail %s: %v, want an error containing %q", strings.Join(tt.args, " "), err, tt.want)
		}
		if stdout != "" {
			t.Errorf("fanmail %s printed %q", strings.Join(tt.args, " "), stdout)
		}
		if entries, _ := os.ReadDir(data); len(entries) != 0 {
			t.Errorf("fanmail %s wrote %s into the data directory", strings.Join(tt.args, " "), entries[0].Name())
		}
	}
}

// TestDKIMKeygenOutput checks keygen's output line by line around the
// key material.
func TestDKIMKeygenOutput(t *testing.T) {
	data := t.TempDir()
	stdout := mustRun(t, data, "dkim", "keygen", "example.org", "--selector", "s1")
	file := filepath.Join(data, "dkim", "example.org", "s1.key")
	head := "created " + file + " (rsa 2048 bits)\n" +
		"fanmail signs mail from example.org with it from its next start: publish this TXT record first.\n\n" +
		"s1._domainkey.example.org. IN TXT (\n\t\"v=DKIM1; k=rsa; p="
	if !strings.HasPrefix(stdout, head) {
		t.Errorf("output:\n%s\nwant it to start with:\n%s", stdout, head)
	}
	rr, err := dns.NewRR(zoneRecord(t, stdout))
	if err != nil {
		t.Fatal(err)
	}
	if txt := rr.(*dns.TXT).Txt; len(txt) != 2 || len(txt[0]) != 255 {
		t.Errorf("an RSA-2048 record is two strings, the first of 255 octets: %q", txt)
	}
	st, err := os.Stat(file)
	if err != nil || st.Mode() != 0o600 {
		t.Errorf("key file mode %v, %v; want 0600", st.Mode(), err)
	}
	pem, _ := os.ReadFile(file)
	if !bytes.HasPrefix(pem, []byte("-----BEGIN PRIVATE KEY-----\n")) {
		t.Errorf("key file is not PKCS#8 PEM: %.40q", pem)
	}
}
