package tlshello

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"testing"
)

// echConfigList builds an ECHConfigList (draft-ietf-tls-esni / RFC 9849
// section 4) with one X25519/HKDF-SHA256/AES-128-GCM config for publicName.
func echConfigList(t *testing.T, publicName string) []byte {
	t.Helper()
	key, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	var c []byte
	c = append(c, 7)                             // config_id
	c = binary.BigEndian.AppendUint16(c, 0x0020) // KEM: DHKEM(X25519, HKDF-SHA256)
	c = vec16(c, key.PublicKey().Bytes())        // public_key
	c = vec16(c, []byte{0x00, 0x01, 0x00, 0x01}) // HKDF-SHA256, AES-128-GCM
	c = append(c, 0)                             // maximum_name_length
	c = append(c, byte(len(publicName)))         // public_name
	c = append(c, publicName...)
	c = binary.BigEndian.AppendUint16(c, 0)           // no extensions
	cfg := binary.BigEndian.AppendUint16(nil, 0xfe0d) // version
	cfg = vec16(cfg, c)
	return vec16(nil, cfg)
}

// TestLiveECH records a real Go client using Encrypted Client Hello: the
// visible (outer) SNI is the config's public name, the real one stays hidden.
func TestLiveECH(t *testing.T) {
	list := echConfigList(t, "public.example.test")
	stream := recordClientStream(t, func(ctx context.Context, addr string) error {
		d := tls.Dialer{Config: &tls.Config{
			ServerName:                     "secret.example.test",
			NextProtos:                     []string{"h2"},
			MinVersion:                     tls.VersionTLS13,
			EncryptedClientHelloConfigList: list,
		}}
		c, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			c.Close()
		}
		return err
	})
	msg, err := ReadHandshake(stream, TypeClientHello)
	if err != nil {
		t.Fatal(err)
	}
	ch, err := ParseClientHello(msg)
	if err != nil {
		t.Fatal(err)
	}
	if !ch.HasECH || ch.ServerName != "public.example.test" {
		t.Fatalf("HasECH %v ServerName %q, want true and the outer public name", ch.HasECH, ch.ServerName)
	}
	t.Logf("ECH outer hello JA4 %s", JA4(ch, 't'))
}
