// Command trafficgen writes a capture of real traffic generated inside
// private network namespaces (see package trafficgen). Needs root.
//
//	go run ./internal/trafficgen/cmd/trafficgen -out F.pcap -size 100MB
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/firstboot/firstboot/internal/trafficgen"
)

func main() {
	out := flag.String("out", "", "capture file to write (pcap)")
	size := flag.String("size", "0", "keep generating until the capture holds this much (e.g. 100MB, 1GB; 0 = one pass)")
	bulk := flag.String("bulk", "1MiB", "size of the one large download per round")
	summary := flag.String("summary", "", "also write what the clients did as JSON to this file")
	flag.Parse()
	if *out == "" {
		log.Fatal("trafficgen: -out FILE is required")
	}
	target, err := parseSize(*size)
	if err != nil {
		log.Fatalf("trafficgen: -size: %v", err)
	}
	bulkBytes, err := parseSize(*bulk)
	if err != nil {
		log.Fatalf("trafficgen: -bulk: %v", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := trafficgen.Generate(ctx, trafficgen.Config{Out: *out, TargetBytes: target, BulkBytes: bulkBytes, Logf: log.Printf})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("trafficgen: wrote %s: %d packets captured, %d dropped by kernel, %d rounds, %s\n",
		res.Path, res.Capture.Captured, res.Capture.Dropped, res.Rounds, res.Elapsed.Round(1e6))
	if *summary != "" {
		b, err := json.MarshalIndent(res, "", "  ")
		if err != nil {
			log.Fatal(err)
		}
		if err := os.WriteFile(*summary, append(b, '\n'), 0o644); err != nil {
			log.Fatalf("trafficgen: write summary: %v", err)
		}
	}
}

// parseSize reads "100MB", "1GB", "512KiB" or a plain byte count.
// Decimal units are powers of 1000, binary ones of 1024.
func parseSize(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"K", 1e3}, {"M", 1e6}, {"G", 1e9}, {"B", 1}}
	s = strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range units {
		if rest, ok := strings.CutSuffix(strings.ToUpper(s), strings.ToUpper(u.suffix)); ok {
			s, mult = strings.TrimSpace(s[:len(rest)]), u.mult
			break
		}
	}
	n, err := strconv.ParseFloat(s, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("bad size %q: want e.g. 100MB or 1GiB", s)
	}
	return int64(n * float64(mult)), nil
}
