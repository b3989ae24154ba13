package unsubscribe

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
)

const (
	// KeySize is the length of a key file: 32 random octets, the
	// SHA-256 output length that RFC 2104 §3 sets as the least a key
	// should have.
	KeySize = 32
	// MaxKeyID is the highest key id, so a token's key id takes at most
	// three octets.
	MaxKeyID  = 65535
	keySuffix = ".key"
)

// Keyring holds the keys of one key directory. It is safe for
// concurrent use; its keys do not change after Open.
type Keyring struct {
	keys map[uint64]*key
	mint *key // the highest id
}

// key is one signing key. Each MAC needs a keyed HMAC state; keying one
// costs two SHA-256 blocks, so states are kept in a pool, each with room
// for a payload, and only Reset between tokens: Mint allocates nothing
// but its result.
type key struct {
	id   uint64
	pool sync.Pool // of *macState
}

// macState is one HMAC-SHA256 under a key, with its buffers.
type macState struct {
	h   hash.Hash
	buf [len(macContext) + maxRaw]byte // macContext, then a payload and its MAC
	sum [sha256.Size]byte
}

func newKey(id uint64, secret []byte) *key {
	k := &key{id: id}
	k.pool.New = func() any {
		st := &macState{h: hmac.New(sha256.New, secret)}
		copy(st.buf[:], macContext)
		return st
	}
	return k
}

func (k *key) get() *macState   { return k.pool.Get().(*macState) }
func (k *key) put(st *macState) { k.pool.Put(st) }

// payload returns the state's buffer after macContext, empty, for the
// payload to be appended to.
func (st *macState) payload() []byte { return st.buf[len(macContext):len(macContext)] }

// seal appends the truncated MAC of payload, which must be the slice
// payload returned with the payload appended.
func (st *macState) seal(payload []byte) []byte {
	st.h.Reset()
	st.h.Write(st.buf[:len(macContext)+len(payload)])
	mac := st.h.Sum(st.sum[:0])
	return append(payload, mac[:macLen]...)
}

// Open loads the keys in dir. On first use, when dir does not exist, it
// creates dir (0700) with a new key 1.key (0600) in it, atomically, so
// no process ever sees the directory without its key. A key directory
// that exists but holds no key is an error: creating a new key there
// would silently break every link already mailed. Every key must be a
// regular file of exactly KeySize octets with no permission for group
// or others; the errors name the file and the fix.
func Open(dir string) (*Keyring, error) {
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		if err := create(dir); err != nil {
			return nil, err
		}
	} else if err != nil {
		return nil, fmt.Errorf("unsubscribe keys: %w", err)
	}
	return load(dir)
}

// load reads every key file of dir. Names starting with "." are left
// alone (a key being written by hand); any other name that is not N.key
// is an error rather than a key silently ignored.
func load(dir string) (*Keyring, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read unsubscribe keys: %w", err)
	}
	kr := &Keyring{keys: map[uint64]*key{}}
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") {
			continue
		}
		path := filepath.Join(dir, name)
		id, ok := keyID(name)
		if !ok {
			return nil, fmt.Errorf("unsubscribe keys: %s is not a key file name: keys are named N.key, N from 1 to %d; move other files out of %s", path, MaxKeyID, dir)
		}
		secret, err := readKey(path)
		if err != nil {
			return nil, err
		}
		k := newKey(id, secret)
		kr.keys[id] = k
		if kr.mint == nil || id > kr.mint.id {
			kr.mint = k
		}
	}
	if kr.mint == nil {
		return nil, fmt.Errorf("unsubscribe keys: %s is missing (no key in %s): restore the directory from a backup, or delete it to start over with a new key, which breaks the unsubscribe links of mail already sent",
			filepath.Join(dir, "1"+keySuffix), dir)
	}
	return kr, nil
}

// keyID parses "N.key", N a decimal without leading zeros in
// 1..MaxKeyID.
func keyID(name string) (uint64, bool) {
	digits, ok := strings.CutSuffix(name, keySuffix)
	if !ok || digits == "" || digits[0] == '0' || len(digits) > 5 {
		return 0, false
	}
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	id, err := strconv.ParseUint(digits, 10, 64)
	if err != nil || id > MaxKeyID {
		return 0, false
	}
	return id, true
}

// readKey reads one key file and checks its type, mode and length.
func readKey(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read unsubscribe key: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read unsubscribe key: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("unsubscribe key %s is not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("unsubscribe key %s has mode %04o: other users could forge unsubscribe links; run chmod 600 %s", path, perm, path)
	}
	secret, err := io.ReadAll(io.LimitReader(f, KeySize+1))
	if err != nil {
		return nil, fmt.Errorf("read unsubscribe key %s: %w", path, err)
	}
	if len(secret) != KeySize {
		return nil, fmt.Errorf("unsubscribe key %s is not %d octets long; make one with: (umask 077; head -c %d /dev/urandom > %s)", path, KeySize, KeySize, path)
	}
	return secret, nil
}

// create makes dir with key 1 in it: the key is written and synced in a
// hidden sibling directory, which is then renamed into place. If another
// process got there first, its directory stays and is loaded.
func create(dir string) error {
	parent := filepath.Dir(dir)
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(dir)+".new-")
	if err != nil {
		return fmt.Errorf("create unsubscribe keys: %w", err)
	}
	defer os.RemoveAll(tmp)
	secret := make([]byte, KeySize)
	if _, err := rand.Read(secret); err != nil {
		return fmt.Errorf("create unsubscribe key: %w", err)
	}
	if err := writeFile(filepath.Join(tmp, "1"+keySuffix), secret); err != nil {
		return err
	}
	if err := syncDir(tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, dir); err != nil {
		if _, statErr := os.Stat(filepath.Join(dir, "1"+keySuffix)); statErr == nil {
			return nil // created meanwhile by another process
		}
		return fmt.Errorf("create unsubscribe keys: %w", err)
	}
	return syncDir(parent)
}

func writeFile(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("create unsubscribe key: %w", err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write unsubscribe key %s: %w", path, err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// MintingKey is the id of the key that signs new tokens.
func (kr *Keyring) MintingKey() uint64 { return kr.mint.id }

// Keys is how many keys verify tokens.
func (kr *Keyring) Keys() int { return len(kr.keys) }
