// Package dkimpy verifies DKIM signatures in tests with dkimpy (Debian's
// python3-dkim), a verifier independent of the Go code that signs. DNS
// answers come from the test, never from the network.
package dkimpy

import (
	"bytes"
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
)

// script verifies one message from stdin, with the TXT records given
// as JSON in argv[1], and prints a JSON list with one entry per
// DKIM-Signature: "pass", or what dkimpy said.
const script = `
import sys, json, logging, io, dkim
recs = json.loads(sys.argv[1])
def dnsfunc(name, timeout=5):
    if isinstance(name, bytes):
        name = name.decode()
    return recs.get(name.rstrip(".") + ".")
msg = sys.stdin.buffer.read()
log = io.StringIO()
logger = logging.getLogger("dkimpy-test")
logger.handlers = [logging.StreamHandler(log)]
logger.setLevel(logging.DEBUG)
d = dkim.DKIM(msg, logger=logger)
n = sum(1 for k, v in d.headers if k.lower() == b"dkim-signature")
out = []
for i in range(n):
    try:
        ok = d.verify(idx=i, dnsfunc=dnsfunc)
    except Exception as e:
        ok, log = False, io.StringIO("%s: %s" % (type(e).__name__, e))
    out.append("pass" if ok else "fail: " + log.getvalue().strip().replace("\n", " | "))
print(json.dumps(out))
`

// Python returns a python3 that has dkimpy, or skips the test naming
// the package to install.
func Python(t testing.TB) string {
	t.Helper()
	candidates := []string{"/usr/bin/python3"} // Debian's, where python3-dkim installs
	if p, err := exec.LookPath("python3"); err == nil {
		candidates = append([]string{p}, candidates...)
	}
	for _, py := range candidates {
		if exec.Command(py, "-c", "import dkim, nacl").Run() == nil {
			return py
		}
	}
	t.Skip("dkimpy is not installed: apt-get install python3-dkim (needs python3 and python3-nacl)")
	return ""
}

// Verify checks every DKIM-Signature of msg, with records mapping
// absolute names (SELECTOR._domainkey.DOMAIN.) to TXT values, and
// returns one result per signature: "pass" or dkimpy's complaint.
func Verify(t testing.TB, py string, records map[string]string, msg []byte) []string {
	t.Helper()
	recs, _ := json.Marshal(records)
	cmd := exec.Command(py, "-c", script, string(recs))
	cmd.Stdin = bytes.NewReader(msg)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("dkimpy: %v\n%s", err, stderr.String())
	}
	var res []string
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("dkimpy output %q: %v", out, err)
	}
	return res
}

// AllPass fails the test unless msg carries want signatures and every
// one verifies.
func AllPass(t testing.TB, py string, records map[string]string, msg []byte, want int) {
	t.Helper()
	res := Verify(t, py, records, msg)
	if len(res) != want {
		t.Errorf("dkimpy saw %d signatures, want %d: %v", len(res), want, res)
	}
	for i, r := range res {
		if r != "pass" {
			t.Errorf("dkimpy, signature %d: %s", i+1, r)
		}
	}
	if t.Failed() {
		t.Logf("message:\n%s", strings.ReplaceAll(string(msg), "\r\n", "\n"))
	}
}
