package dkim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"testing"
)

// dkimpyScript verifies messages with dkimpy (Debian's python3-dkim), an
// implementation independent of go-msgauth, with the DNS answers given
// as JSON in argv[1]. With argv[2] == "batch", stdin is a JSON list of
// messages (latin-1 strings: bytes as they are); otherwise stdin is one
// raw message. It prints, per message, a JSON list with one result per
// DKIM-Signature: "pass", or what dkimpy said.
const dkimpyScript = `
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

// dkimpy returns a python3 that has dkimpy, or skips the test.
func dkimpy(t *testing.T) string {
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

// runDkimpy verifies messages (stdin is the batch or the one message)
// and returns the results per message.
func runDkimpy(t *testing.T, py string, recs map[string]Record, stdin io.Reader, batch bool) [][]string {
	t.Helper()
	dns := map[string]string{}
	for name, r := range recs {
		dns[name] = strings.Join(r.Strings(), "")
	}
	dnsJSON, _ := json.Marshal(dns)
	args := []string{"-c", dkimpyScript, string(dnsJSON)}
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

func TestSignVerifiesWithDkimpy(t *testing.T) {
	t.Parallel()
	py := dkimpy(t)
	kr := testKeyring(t)
	var msgs []string
	var names []string
	var want []int
	for _, tc := range signCases {
		if tc.noDkimpy != "" {
			t.Logf("%s: not checked with dkimpy: %s", tc.name, tc.noDkimpy)
			continue
		}
		for _, domain := range []string{rsaDomain, edDomain, dualDomain} {
			bh, _ := HashBody(strings.NewReader(tc.body))
			sig, err := kr.For(domain).Sign([]byte(tc.header), bh)
			if err != nil {
				t.Fatal(err)
			}
			msgs = append(msgs, latin1(signed(sig, tc.header, tc.sep, tc.body)))
			names = append(names, tc.name+"/"+domain)
			want = append(want, len(kr.For(domain).Keys()))
		}
	}
	batch, _ := json.Marshal(msgs)
	res := runDkimpy(t, py, records(kr), bytes.NewReader(batch), true)
	if len(res) != len(msgs) {
		t.Fatalf("dkimpy answered for %d messages, want %d", len(res), len(msgs))
	}
	for i, r := range res {
		if len(r) != want[i] {
			t.Errorf("%s: dkimpy saw %d signatures, want %d", names[i], len(r), want[i])
		}
		for j, v := range r {
			if v != "pass" {
				t.Errorf("%s: signature %d: %s", names[i], j+1, v)
			}
		}
	}
	// A changed subject must fail: the script is not passing everything.
	bh, _ := HashBody(strings.NewReader("x\r\n"))
	sig, _ := kr.For(dualDomain).Sign([]byte(basicHeader), bh)
	bad := signed(sig, strings.Replace(basicHeader, "hello", "hullo", 1), "\r\n", "x\r\n")
	for _, v := range runDkimpy(t, py, records(kr), bytes.NewReader(bad), false)[0] {
		if v == "pass" {
			t.Error("dkimpy passed a message whose subject changed after signing")
		}
	}
}

// TestSign20MBBody signs a 20 MB body streamed through the hasher and has
// both verifiers read the whole message as a stream.
func TestSign20MBBody(t *testing.T) {
	t.Parallel()
	kr := testKeyring(t)
	bh, err := HashBody(&bigBody{n: bigSize})
	if err != nil {
		t.Fatal(err)
	}
	sig, err := kr.For(dualDomain).Sign([]byte(basicHeader), bh)
	if err != nil {
		t.Fatal(err)
	}
	msg := func() io.Reader {
		return io.MultiReader(strings.NewReader(sig+basicHeader+"\r\n"), &bigBody{n: bigSize})
	}
	for i, err := range verifyGo(t, msg(), records(kr)) {
		if err != nil {
			t.Errorf("go-msgauth, signature %d: %v", i+1, err)
		}
	}
	if testing.Short() {
		return
	}
	t.Run("dkimpy", func(t *testing.T) {
		py := dkimpy(t)
		res := runDkimpy(t, py, records(kr), msg(), false)
		if fmt.Sprint(res) != "[[pass pass]]" {
			t.Errorf("dkimpy: %v", res)
		}
	})
}
