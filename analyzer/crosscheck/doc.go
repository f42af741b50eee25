// Package crosscheck holds tests only: they generate captures of real traffic
// (internal/trafficgen), analyse them with the analyzer and with the firstboot
// binary, and compare the results with independent readers of the same file —
// tshark for protocol fields, connection and byte counts, p0f for TCP SYN
// signatures. They need root and the tools scripts/provision.sh installs.
package crosscheck
