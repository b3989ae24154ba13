package dkim

import (
	"cmp"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// KeyDir is the directory under the data directory that holds the keys.
func KeyDir(dataDir string) string { return filepath.Join(dataDir, "dkim") }

// keyFile is where a key lives in dir (a KeyDir).
func keyFile(dir, domain, selector string) string {
	return filepath.Join(dir, domain, selector+".key")
}

// Keyring holds every key of a KeyDir and, per domain, the signer that
// uses them. It is read-only after LoadKeyring and safe for concurrent
// use. A nil *Keyring has no keys.
type Keyring struct {
	keys    []*Key             // by domain, then selector
	signers map[string]*Signer // by domain
}

// LoadKeyring reads every key in dir (a KeyDir): DOMAIN/SELECTOR.key.
// A dir that does not exist is an empty keyring: nothing is signed. Every
// problem is reported, each naming its file and the fix; the keyring then
// holds the keys that were good, so `fanmail dkim ls` can show them, but
// a server must not start with it (a key the admin meant to sign with
// would be silently unused). now gives the signing time (t=); nil means
// time.Now.
func LoadKeyring(dir string, now func() time.Time) (*Keyring, error) {
	if now == nil {
		now = time.Now
	}
	kr := &Keyring{signers: map[string]*Signer{}}
	domains, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return kr, nil
	}
	if err != nil {
		return kr, fmt.Errorf("read DKIM key directory: %w", err)
	}
	var errs []error
	for _, de := range domains {
		if strings.HasPrefix(de.Name(), ".") {
			continue
		}
		path := filepath.Join(dir, de.Name())
		if !de.IsDir() {
			errs = append(errs, fmt.Errorf("%s: not a domain directory (keys go in %s/DOMAIN/SELECTOR.key): move it out of %s", path, dir, dir))
			continue
		}
		keys, err := loadDomain(dir, de.Name())
		errs = append(errs, err)
		kr.keys = append(kr.keys, keys...)
	}
	kr.index(now)
	return kr, errors.Join(errs...)
}

// loadDomain reads the keys of one domain directory.
func loadDomain(dir, name string) ([]*Key, error) {
	path := filepath.Join(dir, name)
	domain, err := NormalizeDomain(name)
	if err != nil {
		return nil, fmt.Errorf("%s: %w: the directory name is the signing domain", path, err)
	}
	if domain != name {
		return nil, fmt.Errorf("%s: directory name is not the domain's normal form: rename it to %s", path, filepath.Join(dir, domain))
	}
	entries, err := os.ReadDir(path)
	if err != nil {
		return nil, fmt.Errorf("read DKIM key directory: %w", err)
	}
	var keys []*Key
	var errs []error
	seen := 0
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			continue // keygen's temporary files
		}
		seen++
		file := filepath.Join(path, e.Name())
		sel, ok := strings.CutSuffix(e.Name(), ".key")
		if !ok {
			errs = append(errs, fmt.Errorf("%s: not a key file (keys are named SELECTOR.key): move it out of %s", file, path))
			continue
		}
		if s, err := NormalizeSelector(sel); err != nil || s != sel {
			errs = append(errs, fmt.Errorf("%s: the file name is not a lowercase selector followed by .key: rename it or generate a new key", file))
			continue
		}
		k, err := loadKey(file)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		k.Domain, k.Selector = domain, sel
		keys = append(keys, k)
	}
	if seen == 0 {
		errs = append(errs, fmt.Errorf("%s: no key in the directory: generate one with fanmail dkim keygen %s, or remove the directory", path, domain))
	}
	return keys, errors.Join(errs...)
}

// loadKey reads one key file, refusing one that others may read.
func loadKey(file string) (*Key, error) {
	st, err := os.Stat(file)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: missing (a link to a file that is not there): restore the key it points to, or remove the link", file)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file: move it out of the key directory", file)
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("%s: mode %04o lets group or others read the private key: chmod 600 %s (and consider the key exposed: generate a new one)", file, perm, file)
	}
	data, err := os.ReadFile(file)
	if err != nil {
		if errors.Is(err, fs.ErrPermission) {
			return nil, fmt.Errorf("%s: permission denied: run fanmail as the key's owner, or chown the file to that user", file)
		}
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	signer, alg, bits, err := parseKey(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return &Key{Algorithm: alg, Bits: bits, File: file, Written: st.ModTime(), signer: signer}, nil
}

// index sorts the keys and makes each domain's signer: per algorithm,
// the most recently written key (the latest selector on a tie).
func (kr *Keyring) index(now func() time.Time) {
	slices.SortFunc(kr.keys, func(a, b *Key) int {
		return cmp.Or(cmp.Compare(a.Domain, b.Domain), cmp.Compare(a.Selector, b.Selector))
	})
	newest := map[[2]string]*Key{}
	for _, k := range kr.keys {
		id := [2]string{k.Domain, string(k.Algorithm)}
		if cur := newest[id]; cur == nil || !k.Written.Before(cur.Written) {
			newest[id] = k
		}
	}
	for _, k := range kr.keys {
		if newest[[2]string{k.Domain, string(k.Algorithm)}] != k {
			continue
		}
		s := kr.signers[k.Domain]
		if s == nil {
			s = &Signer{domain: k.Domain, now: now}
			kr.signers[k.Domain] = s
		}
		s.keys = append(s.keys, k)
	}
	for _, s := range kr.signers {
		// RSA first: a verifier that checks only the first few signatures
		// (go-msgauth's MaxVerifications) should meet the common one.
		slices.SortFunc(s.keys, func(a, b *Key) int { return cmp.Compare(algOrder(a.Algorithm), algOrder(b.Algorithm)) })
	}
}

func algOrder(a Algorithm) int {
	if a == RSA {
		return 0
	}
	return 1
}

// Keys returns every key, by domain and selector.
func (kr *Keyring) Keys() []*Key {
	if kr == nil {
		return nil
	}
	return kr.keys
}

// Signs reports whether k is one of the keys its domain signs with.
func (kr *Keyring) Signs(k *Key) bool {
	return slices.Contains(kr.For(k.Domain).Keys(), k)
}

// For returns the signer for a domain (any case, U-labels or A-labels),
// or nil when the keyring has no key for exactly that domain.
func (kr *Keyring) For(domain string) *Signer {
	if kr == nil || len(kr.signers) == 0 {
		return nil
	}
	d, err := NormalizeDomain(domain)
	if err != nil {
		return nil
	}
	return kr.signers[d]
}

// Pick returns the signer for a message: the From: domain's if the
// keyring has one (the signature DMARC aligns with), else the envelope
// sender's (the list's own domain), else nil. Either domain may be "".
func (kr *Keyring) Pick(fromDomain, senderDomain string) *Signer {
	if s := kr.For(fromDomain); s != nil {
		return s
	}
	return kr.For(senderDomain)
}

// GenerateOptions says which key Generate makes.
type GenerateOptions struct {
	Domain    string
	Selector  string // "" = DefaultSelector
	Algorithm Algorithm
	Force     bool      // replace an existing key of the same selector
	Now       time.Time // for the default selector; zero = time.Now
}

// Generate creates a key in dir (a KeyDir) and returns it. Domain,
// selector and algorithm are checked before anything is written; the key
// file is written whole (mode 0600, in directories made 0700) or not at
// all, and an existing key is replaced only with Force.
func Generate(dir string, o GenerateOptions) (*Key, error) {
	domain, err := NormalizeDomain(o.Domain)
	if err != nil {
		return nil, err
	}
	alg, err := ParseAlgorithm(string(o.Algorithm))
	if err != nil {
		return nil, err
	}
	sel := o.Selector
	if sel == "" {
		if o.Now.IsZero() {
			o.Now = time.Now()
		}
		if sel, err = DefaultSelector(dir, domain, o.Now); err != nil {
			return nil, err
		}
	} else if sel, err = NormalizeSelector(sel); err != nil {
		return nil, err
	}
	if name := sel + "._domainkey." + domain; len(name) > 253 {
		return nil, fmt.Errorf("record name %s is longer than 253 characters: choose a shorter selector", name)
	}
	file := keyFile(dir, domain, sel)
	if _, err := os.Lstat(file); err == nil && !o.Force {
		return nil, fmt.Errorf("%s already exists: give --force to replace it (its published record then stops verifying mail already sent), or choose another --selector", file)
	}

	var signer crypto.Signer
	var bits int
	switch alg {
	case RSA:
		k, err := rsa.GenerateKey(rand.Reader, RSABits)
		if err != nil {
			return nil, fmt.Errorf("generate RSA key: %w", err)
		}
		signer, bits = k, RSABits
	case Ed25519:
		_, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("generate Ed25519 key: %w", err)
		}
		signer, bits = k, 256
	}
	pemData, err := marshalKey(signer)
	if err != nil {
		return nil, fmt.Errorf("encode key: %w", err)
	}
	if err := writeKey(file, pemData, o.Force); err != nil {
		return nil, err
	}
	st, err := os.Stat(file)
	if err != nil {
		return nil, err
	}
	return &Key{Domain: domain, Selector: sel, Algorithm: alg, Bits: bits, File: file, Written: st.ModTime(), signer: signer}, nil
}

// writeKey writes a key file durably: a temporary file, fsync, then a
// link (which fails if the name exists: no race with a second keygen) or,
// with force, a rename over it; then the directory is synced.
func writeKey(file string, data []byte, force bool) error {
	dir := filepath.Dir(file)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create key directory: %w", err)
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(file)+".tmp*") // mode 0600
	if err != nil {
		return fmt.Errorf("create key file: %w", err)
	}
	defer os.Remove(tmp.Name()) // gone after the link or rename; cleanup on failure
	_, err = tmp.Write(data)
	err = errors.Join(err, tmp.Sync(), tmp.Close())
	if err != nil {
		return fmt.Errorf("write key file %s: %w", tmp.Name(), err)
	}
	if force {
		err = os.Rename(tmp.Name(), file)
	} else {
		err = os.Link(tmp.Name(), file)
	}
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%s already exists: give --force to replace it, or choose another --selector", file)
	}
	if err != nil {
		return fmt.Errorf("install key file: %w", err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync key directory: %w", err)
	}
	return errors.Join(d.Sync(), d.Close())
}

// DefaultSelector returns the selector keygen uses when none is given:
// "fm", the year, and the first letter not yet taken by a key of the
// domain that year (fm2026a, then fm2026b at the next rotation). A
// selector that names its year tells an admin at a glance which records
// are old enough to remove.
func DefaultSelector(dir, domain string, now time.Time) (string, error) {
	prefix := fmt.Sprintf("fm%d", now.UTC().Year())
	for c := 'a'; c <= 'z'; c++ {
		sel := prefix + string(c)
		_, err := os.Lstat(keyFile(dir, domain, sel))
		if errors.Is(err, fs.ErrNotExist) {
			return sel, nil
		}
		if err != nil {
			return "", fmt.Errorf("choose a selector: %w", err)
		}
	}
	return "", fmt.Errorf("selectors %sa to %sz are all taken for %s: give --selector", prefix, prefix, domain)
}
