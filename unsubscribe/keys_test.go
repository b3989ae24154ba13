package unsubscribe

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// writeKey writes key id into dir as an operator would: 32 octets, 0600.
// The octets are fixed per id, so tests and fuzz seeds can rely on them.
func writeKey(t testing.TB, dir string, id int) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	secret := bytes.Repeat([]byte{byte(id), byte(id >> 8)}, KeySize/2)
	if err := os.WriteFile(filepath.Join(dir, strconv.Itoa(id)+".key"), secret, 0o600); err != nil {
		t.Fatal(err)
	}
}

// fixedKeyring opens a key directory holding the given fixed keys.
func fixedKeyring(t testing.TB, ids ...int) *Keyring {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "keys")
	for _, id := range ids {
		writeKey(t, dir, id)
	}
	kr, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	return kr
}

func TestOpenCreatesKeyOnFirstUse(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "unsubscribe-keys")
	kr, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if kr.MintingKey() != 1 || kr.Keys() != 1 {
		t.Errorf("new keyring: minting key %d of %d keys, want key 1 of 1", kr.MintingKey(), kr.Keys())
	}
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("key directory mode %04o, want 0700", fi.Mode().Perm())
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != "1.key" {
		t.Fatalf("key directory holds %v, want only 1.key", entries)
	}
	fi, err = os.Stat(filepath.Join(dir, "1.key"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 || fi.Size() != KeySize {
		t.Errorf("1.key: mode %04o, %d octets; want 0600, %d", fi.Mode().Perm(), fi.Size(), KeySize)
	}
	siblings, _ := os.ReadDir(filepath.Dir(dir))
	if len(siblings) != 1 {
		t.Errorf("the data directory holds %v, want only the key directory (no temporary left)", siblings)
	}

	// The key is kept: a second Open verifies what the first minted.
	tok, err := kr.Mint("announce@example.org", "alice@example.com")
	if err != nil {
		t.Fatal(err)
	}
	again, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := again.Verify(tok); err != nil {
		t.Errorf("reopened keyring rejects a token of the first: %v", err)
	}
}

// Processes that start together on a new data directory end up with one
// key between them.
func TestOpenConcurrentFirstUse(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	const n = 8
	krs := make([]*Keyring, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { krs[i], errs[i] = Open(dir) })
	}
	wg.Wait()
	tok := ""
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("Open %d: %v", i, errs[i])
		}
		if tok == "" {
			var err error
			if tok, err = krs[i].Mint("l@example.org", "m@example.org"); err != nil {
				t.Fatal(err)
			}
		}
		if _, _, err := krs[i].Verify(tok); err != nil {
			t.Errorf("keyring %d does not share the key: %v", i, err)
		}
	}
}

func TestOpenRejects(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, dir string)
		want  []string // substrings of the error; the file's path is always one
		file  string
	}{
		{"empty directory", func(t *testing.T, dir string) { os.Mkdir(dir, 0o700) },
			[]string{"is missing", "restore"}, "1.key"},
		{"key open to others", func(t *testing.T, dir string) {
			writeKey(t, dir, 1)
			os.Chmod(filepath.Join(dir, "1.key"), 0o644)
		}, []string{"mode 0644", "chmod 600"}, "1.key"},
		{"key open to the group", func(t *testing.T, dir string) {
			writeKey(t, dir, 1)
			os.Chmod(filepath.Join(dir, "1.key"), 0o640)
		}, []string{"mode 0640"}, "1.key"},
		{"short key", func(t *testing.T, dir string) {
			os.Mkdir(dir, 0o700)
			os.WriteFile(filepath.Join(dir, "1.key"), make([]byte, KeySize-1), 0o600)
		}, []string{"not 32 octets", "head -c 32 /dev/urandom"}, "1.key"},
		{"long key", func(t *testing.T, dir string) {
			os.Mkdir(dir, 0o700)
			os.WriteFile(filepath.Join(dir, "2.key"), make([]byte, KeySize+1), 0o600)
		}, []string{"not 32 octets"}, "2.key"},
		{"key is a directory", func(t *testing.T, dir string) {
			os.MkdirAll(filepath.Join(dir, "1.key"), 0o700)
		}, []string{"not a regular file"}, "1.key"},
		{"dangling link", func(t *testing.T, dir string) {
			os.Mkdir(dir, 0o700)
			os.Symlink(filepath.Join(dir, "gone"), filepath.Join(dir, "1.key"))
		}, []string{"no such file"}, "1.key"},
		{"stray file", func(t *testing.T, dir string) {
			writeKey(t, dir, 1)
			os.WriteFile(filepath.Join(dir, "new-key"), make([]byte, KeySize), 0o600)
		}, []string{"not a key file name", "N.key"}, "new-key"},
		{"leading zero", func(t *testing.T, dir string) {
			writeKey(t, dir, 1)
			os.WriteFile(filepath.Join(dir, "02.key"), make([]byte, KeySize), 0o600)
		}, []string{"not a key file name"}, "02.key"},
		{"key 0", func(t *testing.T, dir string) {
			os.Mkdir(dir, 0o700)
			os.WriteFile(filepath.Join(dir, "0.key"), make([]byte, KeySize), 0o600)
		}, []string{"not a key file name"}, "0.key"},
		{"id too high", func(t *testing.T, dir string) {
			os.Mkdir(dir, 0o700)
			os.WriteFile(filepath.Join(dir, "65536.key"), make([]byte, KeySize), 0o600)
		}, []string{"1 to 65535"}, "65536.key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "keys")
			tt.setup(t, dir)
			_, err := Open(dir)
			if err == nil {
				t.Fatal("Open succeeded, want an error")
			}
			for _, w := range append(tt.want, filepath.Join(dir, tt.file)) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

// A file whose name starts with "." (a key being written) is not a key,
// and not an error either.
func TestOpenSkipsHiddenFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	writeKey(t, dir, 1)
	if err := os.WriteFile(filepath.Join(dir, ".2.key.tmp"), []byte("partial"), 0o644); err != nil {
		t.Fatal(err)
	}
	kr, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if kr.Keys() != 1 {
		t.Errorf("%d keys, want 1", kr.Keys())
	}
}

// Rotation as the README tells it: the newest key mints, every kept key
// verifies, and deleting a key retires its links.
func TestRotation(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	writeKey(t, dir, 1)
	kr1, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	old, _ := kr1.Mint("announce@example.org", "alice@example.com")

	writeKey(t, dir, 2)
	kr2, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if kr2.MintingKey() != 2 {
		t.Errorf("minting key %d after adding 2.key, want 2", kr2.MintingKey())
	}
	cur, _ := kr2.Mint("announce@example.org", "alice@example.com")
	if cur == old {
		t.Error("key 2 minted the same token as key 1")
	}
	for _, tok := range []string{old, cur} {
		if _, _, err := kr2.Verify(tok); err != nil {
			t.Errorf("with keys 1 and 2 kept, %s: %v", tok, err)
		}
	}

	if err := os.Remove(filepath.Join(dir, "1.key")); err != nil {
		t.Fatal(err)
	}
	kr3, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := kr3.Verify(old); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "key 1") {
		t.Errorf("key 1 retired: Verify(old) = %v, want ErrInvalid naming key 1", err)
	}
	if _, _, err := kr3.Verify(cur); err != nil {
		t.Errorf("key 2 kept: Verify(cur) = %v", err)
	}
}
