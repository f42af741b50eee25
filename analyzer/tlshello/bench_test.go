package tlshello

import (
	"os"
	"testing"
)

func benchHello(b *testing.B) (stream, msg []byte) {
	b.Helper()
	stream, err := os.ReadFile("testdata/curl.bin")
	if err != nil {
		b.Fatal(err)
	}
	msg, err = ReadHandshake(stream, TypeClientHello)
	if err != nil {
		b.Fatal(err)
	}
	return stream, msg
}

func BenchmarkReadHandshake(b *testing.B) {
	stream, _ := benchHello(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ReadHandshake(stream, TypeClientHello); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseClientHello(b *testing.B) {
	_, msg := benchHello(b)
	b.ReportAllocs()
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		if _, err := ParseClientHello(msg); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkClientHelloParseReuse is the hot-path form: one ClientHello per
// worker, parsed into again and again.
func BenchmarkClientHelloParseReuse(b *testing.B) {
	_, msg := benchHello(b)
	var ch ClientHello
	b.ReportAllocs()
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		if err := ch.Parse(msg); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkJA4(b *testing.B) {
	_, msg := benchHello(b)
	ch, err := ParseClientHello(msg)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		_ = JA4(ch, 't')
	}
}

func BenchmarkJA3(b *testing.B) {
	_, msg := benchHello(b)
	ch, err := ParseClientHello(msg)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		_, _ = JA3(ch)
	}
}
