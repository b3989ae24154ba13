package dkim

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/net/idna"
)

// Algorithm is a key type, as in the k= tag of the DNS record.
type Algorithm string

// The key types DKIM uses: RSA (RFC 6376, RFC 8301) and Ed25519 (RFC 8463).
const (
	RSA     Algorithm = "rsa"
	Ed25519 Algorithm = "ed25519"
)

// RSABits is the size of the RSA keys keygen writes: RFC 8301 §3.2 asks
// for at least 2048, and 2048 is what every verifier takes and what fits
// in one DNS TXT record of two strings.
const RSABits = 2048

// Bounds on RSA keys read from disk: RFC 8301 §3.2 makes verifiers reject
// keys under 1024 bits and only requires them to accept up to 4096.
const (
	minRSABits = 1024
	maxRSABits = 4096
)

// ParseAlgorithm reads an algorithm name as given on the command line.
func ParseAlgorithm(s string) (Algorithm, error) {
	switch a := Algorithm(strings.ToLower(strings.TrimSpace(s))); a {
	case RSA, Ed25519:
		return a, nil
	}
	return "", fmt.Errorf("algorithm %q: use rsa (2048 bits, verified everywhere) or ed25519 (RFC 8463; best alongside an rsa key)", s)
}

// Key is one signing key and where it came from.
type Key struct {
	Domain    string    // the signing domain (d=), A-labels, lowercase
	Selector  string    // s=, lowercase
	Algorithm Algorithm // k=
	Bits      int       // the RSA modulus size; 256 for Ed25519
	File      string    // the PEM file it was read from
	Written   time.Time // the file's modification time: the newest key signs
	signer    crypto.Signer
}

// Record is the DNS TXT record that publishes a key's public half.
type Record struct {
	Name  string // SELECTOR._domainkey.DOMAIN. (absolute)
	Value string // v=DKIM1; k=...; p=...
}

// Record returns the TXT record receivers look up to verify the key's
// signatures (RFC 6376 §3.6.1): p= is the DER SubjectPublicKeyInfo for
// RSA, as OpenDKIM publishes it, and the raw 32-byte key for Ed25519
// (RFC 8463 §4.2).
func (k *Key) Record() Record {
	var p []byte
	switch pub := k.signer.Public().(type) {
	case *rsa.PublicKey:
		p, _ = x509.MarshalPKIXPublicKey(pub) // cannot fail for an RSA key
	case ed25519.PublicKey:
		p = pub
	}
	return Record{
		Name:  k.Selector + "._domainkey." + k.Domain + ".",
		Value: "v=DKIM1; k=" + string(k.Algorithm) + "; p=" + base64.StdEncoding.EncodeToString(p),
	}
}

// maxTXTString is the longest character-string a TXT record holds
// (RFC 1035 §3.3); a longer value is split, and verifiers join the
// strings without separator (RFC 6376 §3.6.2.2).
const maxTXTString = 255

// Strings splits the value into the character-strings of the TXT record.
func (r Record) Strings() []string {
	var out []string
	for v := r.Value; v != ""; {
		n := min(len(v), maxTXTString)
		out = append(out, v[:n])
		v = v[n:]
	}
	return out
}

// Zone returns the record in zone-file form (RFC 1035 §5.1), ready to
// paste: one line for a value of one string, parentheses and one string
// per line otherwise.
func (r Record) Zone() string {
	strs := r.Strings()
	if len(strs) == 1 {
		return fmt.Sprintf("%s IN TXT %q", r.Name, strs[0])
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s IN TXT (", r.Name)
	for i, s := range strs {
		fmt.Fprintf(&b, "\n\t%q", s) // the value is base64 and ASCII: %q needs no escapes
		if i == len(strs)-1 {
			b.WriteString(" )")
		}
	}
	return b.String()
}

// parseKey reads a PEM private key: PKCS#8 ("PRIVATE KEY", what keygen
// and `openssl genpkey` write) or PKCS#1 ("RSA PRIVATE KEY", what
// opendkim-genkey writes). The error says what is wrong with the file's
// content; the caller adds its name.
func parseKey(data []byte) (crypto.Signer, Algorithm, int, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, "", 0, fmt.Errorf("no PEM block (expected -----BEGIN PRIVATE KEY----- as written by fanmail dkim keygen)")
	}
	var key any
	var err error
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "ENCRYPTED PRIVATE KEY":
		return nil, "", 0, fmt.Errorf("the key is encrypted: fanmail reads keys at startup without a passphrase; decrypt it with openssl pkey, or generate a new one")
	default:
		return nil, "", 0, fmt.Errorf("PEM block %q is not a private key (expected PRIVATE KEY or RSA PRIVATE KEY)", block.Type)
	}
	if err != nil {
		return nil, "", 0, fmt.Errorf("malformed %s: %w", block.Type, err)
	}
	switch k := key.(type) {
	case *rsa.PrivateKey:
		bits := k.N.BitLen()
		if bits < minRSABits || bits > maxRSABits {
			return nil, "", 0, fmt.Errorf("RSA key of %d bits: verifiers take %d to %d (RFC 8301); generate a new one", bits, minRSABits, maxRSABits)
		}
		k.Precompute()
		return k, RSA, bits, nil
	case ed25519.PrivateKey:
		return k, Ed25519, 256, nil
	}
	return nil, "", 0, fmt.Errorf("a %T key: DKIM signs with rsa or ed25519 keys only", key)
}

// marshalKey writes a private key as PKCS#8 PEM.
func marshalKey(k crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// NormalizeDomain checks a signing domain and returns it as the DNS has
// it: lowercase A-labels (an internationalized name is converted, since
// verifiers look the key up by A-labels, RFC 8616), without a trailing
// dot. It needs at least two labels.
func NormalizeDomain(s string) (string, error) {
	d := strings.TrimSuffix(strings.TrimSpace(s), ".")
	if d == "" {
		return "", fmt.Errorf("domain %q: empty (give the domain mail comes from, e.g. example.org)", s)
	}
	if !utf8.ValidString(d) {
		return "", fmt.Errorf("domain %q: invalid UTF-8", s)
	}
	a := strings.ToLower(d)
	if !isASCII(d) {
		var err error
		if a, err = idna.Lookup.ToASCII(d); err != nil {
			return "", fmt.Errorf("domain %q: not a valid internationalized domain name (%v)", s, err)
		}
	}
	if err := checkName(a); err != nil {
		return "", fmt.Errorf("domain %q: %w", s, err)
	}
	if !strings.Contains(a, ".") {
		return "", fmt.Errorf("domain %q: a single label; give the full domain mail comes from, e.g. example.org", s)
	}
	return a, nil
}

// NormalizeSelector checks a selector (RFC 6376 §3.1: one or more DNS
// labels, letters, digits and hyphens) and returns it in lowercase.
func NormalizeSelector(s string) (string, error) {
	sel := strings.ToLower(strings.TrimSpace(s))
	if sel == "" {
		return "", fmt.Errorf("selector %q: empty (leave --selector out for the default fmYYYYa)", s)
	}
	if err := checkName(sel); err != nil {
		return "", fmt.Errorf("selector %q: %w", s, err)
	}
	return sel, nil
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// checkName checks a dot-separated LDH name in lowercase ASCII.
func checkName(n string) error {
	if len(n) > 253 {
		return fmt.Errorf("longer than 253 characters")
	}
	for label := range strings.SplitSeq(n, ".") {
		switch {
		case label == "":
			return fmt.Errorf("an empty label (two dots in a row, or a dot at the start)")
		case len(label) > 63:
			return fmt.Errorf("label %q is longer than 63 characters", label)
		case label[0] == '-' || label[len(label)-1] == '-':
			return fmt.Errorf("label %q starts or ends with a hyphen", label)
		}
		for i := 0; i < len(label); i++ {
			if c := label[i]; !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
				return fmt.Errorf("%q in label %q: only letters, digits and hyphens", c, label)
			}
		}
	}
	return nil
}
