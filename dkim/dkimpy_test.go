package dkim

import (
	"fmt"
	"io"
	"strings"
	"testing"

	"fanmail/internal/dkimpy"
)

// dkimpyRecords gives recs as the TXT values package dkimpy serves.
func dkimpyRecords(recs map[string]Record) map[string]string {
	txt := map[string]string{}
	for name, r := range recs {
		txt[name] = strings.Join(r.Strings(), "")
	}
	return txt
}

func TestSignVerifiesWithDkimpy(t *testing.T) {
	t.Parallel()
	py := dkimpy.Python(t)
	kr := testKeyring(t)
	var msgs [][]byte
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
			msgs = append(msgs, signed(sig, tc.header, tc.sep, tc.body))
			names = append(names, tc.name+"/"+domain)
			want = append(want, len(kr.For(domain).Keys()))
		}
	}
	res := dkimpy.VerifyBatch(t, py, dkimpyRecords(records(kr)), msgs)
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
	for _, v := range dkimpy.Verify(t, py, dkimpyRecords(records(kr)), bad) {
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
		py := dkimpy.Python(t)
		res := dkimpy.VerifyReader(t, py, dkimpyRecords(records(kr)), msg())
		if fmt.Sprint(res) != "[pass pass]" {
			t.Errorf("dkimpy: %v", res)
		}
	})
}
