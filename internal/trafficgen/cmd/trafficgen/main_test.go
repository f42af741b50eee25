package main

import "testing"

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		bad  bool
	}{
		{in: "0", want: 0},
		{in: "1234", want: 1234},
		{in: "100MB", want: 100_000_000},
		{in: "100mb", want: 100_000_000},
		{in: "1GB", want: 1_000_000_000},
		{in: "1.5 MB", want: 1_500_000},
		{in: "1MiB", want: 1 << 20},
		{in: "512KiB", want: 512 << 10},
		{in: "2G", want: 2_000_000_000},
		{in: "-1MB", bad: true},
		{in: "MB", bad: true},
		{in: "ten", bad: true},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := parseSize(tc.in)
			if tc.bad {
				if err == nil {
					t.Fatalf("parseSize(%q) = %d, want an error", tc.in, got)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("parseSize(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
			}
		})
	}
}
