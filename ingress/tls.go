package ingress

// Inbound STARTTLS (RFC 3207): the listener's certificate and key come
// from PEM files that an ACME client or an operator replaces in place,
// so they are read again when either file changes (checked at most once
// a second, at a handshake) and on SIGHUP (Reload), and a renewal needs
// no restart. A pair that no longer loads leaves the last good one in
// service and is logged.

import (
	"crypto/tls"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"
)

// KeyPair is a certificate and its private key on disk, served to
// STARTTLS handshakes through GetCertificate.
type KeyPair struct {
	certFile, keyFile string
	log               *slog.Logger

	mu      sync.Mutex
	cert    *tls.Certificate
	stamps  [2]fileStamp // of certFile and keyFile when cert was loaded
	checked time.Time    // last look at the files
}

// fileStamp tells whether a file was replaced or rewritten.
type fileStamp struct {
	mod  time.Time
	size int64
	ino  uint64
}

func stampOf(path string) (fileStamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, err
	}
	st := fileStamp{mod: fi.ModTime(), size: fi.Size()}
	if sys, ok := fi.Sys().(interface{ Ino() uint64 }); ok {
		st.ino = sys.Ino()
	}
	return st, nil
}

// checkInterval bounds how often handshakes look at the files.
const checkInterval = time.Second

// LoadKeyPair reads the PEM certificate chain and private key; the error
// names the file at fault. A nil log discards.
func LoadKeyPair(certFile, keyFile string, log *slog.Logger) (*KeyPair, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	k := &KeyPair{certFile: certFile, keyFile: keyFile, log: log}
	if err := k.Reload(); err != nil {
		return nil, err
	}
	return k, nil
}

// Reload reads both files again. On error the pair in service stays.
func (k *KeyPair) Reload() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.reloadLocked()
}

func (k *KeyPair) reloadLocked() error {
	k.checked = time.Now()
	certStamp, err1 := stampOf(k.certFile)
	keyStamp, err2 := stampOf(k.keyFile)
	cert, err := readKeyPair(k.certFile, k.keyFile)
	if err != nil {
		return err
	}
	if err := errors.Join(err1, err2); err != nil {
		return fmt.Errorf("TLS key pair: %w", err)
	}
	first := k.cert == nil
	k.cert, k.stamps = cert, [2]fileStamp{certStamp, keyStamp}
	if !first {
		k.log.Info("TLS certificate reloaded", "cert", k.certFile, "not_after", cert.Leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	return nil
}

// readKeyPair parses the two files, saying which one is wrong.
func readKeyPair(certFile, keyFile string) (*tls.Certificate, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("TLS certificate: %w", err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("TLS key: %w", err)
	}
	if !hasPEM(certPEM, "CERTIFICATE") {
		return nil, fmt.Errorf("TLS certificate %s: no PEM CERTIFICATE block", certFile)
	}
	if !hasPEM(keyPEM, "") {
		return nil, fmt.Errorf("TLS key %s: no PEM private key", keyFile)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("TLS certificate %s with key %s: %w", certFile, keyFile, err)
	}
	return &cert, nil
}

// hasPEM reports whether data holds a PEM block of type typ, or any
// private key block when typ is "".
func hasPEM(data []byte, typ string) bool {
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return false
		}
		if b.Type == typ || typ == "" && (b.Type == "PRIVATE KEY" || len(b.Type) > 12 && b.Type[len(b.Type)-12:] == " PRIVATE KEY") {
			return true
		}
	}
}

// GetCertificate is tls.Config.GetCertificate: the pair in service,
// read again first if a file changed since it was loaded.
func (k *KeyPair) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if time.Since(k.checked) >= checkInterval {
		k.checked = time.Now()
		c, err1 := stampOf(k.certFile)
		s, err2 := stampOf(k.keyFile)
		if err1 == nil && err2 == nil && (c != k.stamps[0] || s != k.stamps[1]) {
			if err := k.reloadLocked(); err != nil {
				// Half-written during a renewal, perhaps: keep serving
				// the old pair and look again at the next check.
				k.log.Error("TLS certificate changed but does not load; still serving the previous one", "err", err)
			}
		}
	}
	return k.cert, nil
}

// ServerTLS returns the listener's TLS configuration for k, at least
// minVersion (tls.VersionTLS12 when 0).
func ServerTLS(k *KeyPair, minVersion uint16) *tls.Config {
	if minVersion == 0 {
		minVersion = tls.VersionTLS12
	}
	return &tls.Config{GetCertificate: k.GetCertificate, MinVersion: minVersion}
}

// tlsDescription is how the Received header describes a session's TLS,
// e.g. "version=TLS1.3 cipher=TLS_AES_128_GCM_SHA256"; "" without TLS.
func (ss *session) tlsDescription() string {
	st, ok := ss.guard.tlsState()
	if !ok {
		return ""
	}
	return "version=" + strings.ReplaceAll(tls.VersionName(st.Version), " ", "") + " cipher=" + tls.CipherSuiteName(st.CipherSuite)
}
