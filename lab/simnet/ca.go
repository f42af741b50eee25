package simnet

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/firstboot/firstboot/internal/fsutil"
)

// File names LoadOrCreateCA uses inside its directory.
const (
	CACertFile = "ca.pem"     // the certificate a guest image installs as trusted
	CAKeyFile  = "ca-key.pem" // the private key; stays on the host (mode 0600)
)

// maxCachedLeaves bounds the per-CA leaf cache so a guest sending endless
// random SNIs cannot grow memory without limit; beyond it leaves are minted
// per handshake.
const maxCachedLeaves = 4096

// CA is a per-lab certificate authority (ECDSA P-256). Leaf certificates for
// any name are minted on demand and cached.
type CA struct {
	Cert    *x509.Certificate
	Key     *ecdsa.PrivateKey
	CertPEM []byte

	mu     sync.Mutex
	leaves map[string]*tls.Certificate
}

// NewCA creates a fresh CA valid from a day ago for ten years.
func NewCA() (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate lab CA key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject: pkix.Name{
			Organization: []string{"firstboot lab"},
			// The serial in the name tells one lab's CA from another's in a
			// guest trust store.
			CommonName: "firstboot lab CA " + hex.EncodeToString(serial.Bytes()[:4]),
		},
		NotBefore:             now.Add(-24 * time.Hour),
		NotAfter:              now.AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("create lab CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse lab CA certificate: %w", err)
	}
	return &CA{
		Cert:    cert,
		Key:     key,
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
	}, nil
}

// LoadOrCreateCA loads dir/ca.pem and dir/ca-key.pem, or creates both (dir
// too) when neither exists. Exactly one of them existing is an error: the
// pair would not match.
func LoadOrCreateCA(dir string) (*CA, error) {
	certPath, keyPath := filepath.Join(dir, CACertFile), filepath.Join(dir, CAKeyFile)
	certPEM, certErr := os.ReadFile(certPath)
	keyPEM, keyErr := os.ReadFile(keyPath)
	switch {
	case certErr == nil && keyErr == nil:
		return parseCA(certPEM, keyPEM)
	case errors.Is(certErr, fs.ErrNotExist) && errors.Is(keyErr, fs.ErrNotExist):
	case certErr != nil && !errors.Is(certErr, fs.ErrNotExist):
		return nil, fmt.Errorf("read lab CA: %w", certErr)
	case keyErr != nil && !errors.Is(keyErr, fs.ErrNotExist):
		return nil, fmt.Errorf("read lab CA key: %w", keyErr)
	default:
		return nil, fmt.Errorf("lab CA in %s is incomplete (need both %s and %s): remove the remaining file to create a new CA", dir, CACertFile, CAKeyFile)
	}
	ca, err := NewCA()
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(ca.Key)
	if err != nil {
		return nil, fmt.Errorf("encode lab CA key: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create lab CA directory: %w", err)
	}
	// Key first: a crash between the writes leaves "incomplete", never a
	// certificate whose key is lost.
	if err := fsutil.WriteFileAtomic(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return nil, err
	}
	if err := fsutil.WriteFileAtomic(certPath, ca.CertPEM, 0o644); err != nil {
		return nil, err
	}
	return ca, nil
}

func parseCA(certPEM, keyPEM []byte) (*CA, error) {
	cb, _ := pem.Decode(certPEM)
	if cb == nil || cb.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("lab CA %s: no CERTIFICATE PEM block", CACertFile)
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse lab CA %s: %w", CACertFile, err)
	}
	if !cert.IsCA {
		return nil, fmt.Errorf("lab CA %s is not a CA certificate", CACertFile)
	}
	kb, _ := pem.Decode(keyPEM)
	if kb == nil {
		return nil, fmt.Errorf("lab CA %s: no PEM block", CAKeyFile)
	}
	anyKey, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse lab CA %s: %w", CAKeyFile, err)
	}
	key, ok := anyKey.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("lab CA %s: want an ECDSA key, got %T", CAKeyFile, anyKey)
	}
	pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
	if !ok || !pub.Equal(&key.PublicKey) {
		return nil, fmt.Errorf("lab CA %s does not match %s: remove both to create a new CA", CAKeyFile, CACertFile)
	}
	return &CA{Cert: cert, Key: key, CertPEM: pem.EncodeToMemory(cb)}, nil
}

func randomSerial() (*big.Int, error) {
	// 127 bits keep the DER integer positive and the serial unique.
	s, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("generate certificate serial: %w", err)
	}
	return s.SetBit(s, 126, 1), nil // fixed length, so CommonName has 4 bytes to show
}

// Leaf returns a certificate for name (a DNS name or an IP address literal),
// signed by the CA, minting and caching it on first use. now sets the
// validity window (from two days before to a year after) so a guest whose
// clock lags still accepts it.
func (ca *CA) Leaf(name string, now time.Time) (*tls.Certificate, error) {
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	if name == "" {
		return nil, errors.New("mint leaf certificate: empty name")
	}
	ca.mu.Lock()
	if c, ok := ca.leaves[name]; ok {
		ca.mu.Unlock()
		return c, nil
	}
	ca.mu.Unlock()

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("mint leaf for %q: %w", name, err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    now.Add(-48 * time.Hour),
		NotAfter:     now.Add(365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if ip := net.ParseIP(name); ip != nil {
		tmpl.IPAddresses = []net.IP{ip}
	} else {
		tmpl.DNSNames = []string{name}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("mint leaf for %q: %w", name, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("mint leaf for %q: %w", name, err)
	}
	c := &tls.Certificate{Certificate: [][]byte{der, ca.Cert.Raw}, PrivateKey: key, Leaf: leaf}

	ca.mu.Lock()
	defer ca.mu.Unlock()
	if prev, ok := ca.leaves[name]; ok {
		return prev, nil // another handshake minted it meanwhile; keep one
	}
	if ca.leaves == nil {
		ca.leaves = make(map[string]*tls.Certificate)
	}
	if len(ca.leaves) < maxCachedLeaves {
		ca.leaves[name] = c
	}
	return c, nil
}
