// Package dkimpy verifies DKIM signatures in tests with dkimpy (Debian's
// python3-dkim), a verifier independent of the Go code that signs. DNS
// answers come from the test, never from the network.
package dkimpy

import (
	"bytes"
	"encoding/json"
	"io"
	"os/exec"
	"strings"
	"testing"
)

// script verifies messages, with the TXT records given as JSON in
// argv[1]. With argv[2] == "batch", stdin is a JSON list of messages
// (latin-1 strings: bytes as they are); otherwise stdin is one raw
// message. It prints, per message, a JSON list with one entry per
// DKIM-Signature: "pass", or what dkimpy said.
const script = `
import sys, json, logging, io, dkim
recs = json.loads(sys.argv[1])
def dnsfunc(name, timeout=5):
    if isinstance(name, bytes):
        name = name.decode()
    return recs.get(name.rstrip(".") + ".")
def check(msg):
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
    return out
if len(sys.argv) > 2 and sys.argv[2] == "batch":
    msgs = json.load(sys.stdin)
    print(json.dumps([check(m.encode("latin-1")) for m in msgs]))
else:
    print(json.dumps([check(sys.stdin.buffer.read())]))
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
	return VerifyReader(t, py, records, bytes.NewReader(msg))
}

// VerifyReader is Verify for a message read as a stream, so that a large
// one need not be held in memory.
func VerifyReader(t testing.TB, py string, records map[string]string, msg io.Reader) []string {
	t.Helper()
	return run(t, py, records, msg, false)[0]
}

// VerifyBatch is Verify for many messages in one run of python, with the
// results in the order of msgs.
func VerifyBatch(t testing.TB, py string, records map[string]string, msgs [][]byte) [][]string {
	t.Helper()
	strs := make([]string, len(msgs))
	for i, m := range msgs {
		strs[i] = latin1(m)
	}
	batch, err := json.Marshal(strs)
	if err != nil {
		t.Fatal(err)
	}
	res := run(t, py, records, bytes.NewReader(batch), true)
	if len(res) != len(msgs) {
		t.Fatalf("dkimpy answered for %d messages, want %d", len(res), len(msgs))
	}
	return res
}

// run runs the script on stdin, one message or a batch, and returns the
// results per message.
func run(t testing.TB, py string, records map[string]string, stdin io.Reader, batch bool) [][]string {
	t.Helper()
	recs, _ := json.Marshal(records)
	args := []string{"-c", script, string(recs)}
	if batch {
		args = append(args, "batch")
	}
	cmd := exec.Command(py, args...)
	cmd.Stdin = stdin
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("dkimpy: %v\n%s", err, stderr.String())
	}
	var res [][]string
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("dkimpy output %q: %v", out, err)
	}
	return res
}

// latin1 maps each byte to the rune of the same value, so that JSON
// carries arbitrary bytes to python, which encodes them back.
func latin1(b []byte) string {
	r := make([]rune, len(b))
	for i, c := range b {
		r[i] = rune(c)
	}
	return string(r)
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
