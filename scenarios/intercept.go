package scenarios

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"github.com/firstboot/firstboot/lab"
	"github.com/firstboot/firstboot/lab/intercept"
	"github.com/firstboot/firstboot/lab/netns"
	"github.com/firstboot/firstboot/lab/tlskeys"
	"github.com/firstboot/firstboot/results/manifest"
)

// interceptRun is a routed run's TLS interception: the proxy in the lab
// namespace, its rules, its log.
type interceptRun struct {
	proxy *intercept.Proxy
	rules [][]string
	log   *os.File
}

// interceptUp starts the intercepting proxy in the lab namespace and
// diverts the machine's TCP 443 to it (and rejects its UDP 443 when the
// scenario says so). The secrets of both legs go to tls-keys.log and the
// capture, like the responders' in simulated mode.
func (r *runner) interceptUp(ctx context.Context) error {
	if r.network.Mode() != lab.Routed {
		return fmt.Errorf("network.intercept_tls needs routed mode, not %s: bridged traffic does not pass the lab namespace", r.network.Mode())
	}
	ca, err := r.labCA()
	if err != nil {
		return err
	}
	roots, err := x509.SystemCertPool()
	if err != nil {
		roots = x509.NewCertPool()
	}
	used := []string{"system"}
	for _, f := range r.cfg.InterceptRoots {
		pem, err := os.ReadFile(f)
		if err != nil {
			return fmt.Errorf("intercept roots: %w", err)
		}
		if !roots.AppendCertsFromPEM(pem) {
			return fmt.Errorf("intercept roots: %s holds no PEM certificate", f)
		}
		used = append(used, f)
	}
	keys, err := tlskeys.Create(filepath.Join(r.dir, manifest.TLSKeysFile))
	if err != nil {
		return err
	}
	logf, err := os.Create(filepath.Join(r.dir, manifest.InterceptFile))
	if err != nil {
		keys.Close()
		return err
	}
	var ln net.Listener
	err = netns.Do(r.lab.Netns(), func() error {
		var err error
		ln, err = net.Listen("tcp", net.JoinHostPort(r.network.Addr().String(), "0"))
		return err
	})
	if err != nil {
		keys.Close()
		logf.Close()
		return fmt.Errorf("intercept: listening in the lab namespace: %w", err)
	}
	// Real servers are reached from firstboot's own namespace, by the same
	// way out the machine's other traffic takes.
	p, err := intercept.Start(ln, intercept.Config{CA: ca, Roots: roots, KeyLog: keys, Log: logf, Now: r.now})
	if err != nil {
		ln.Close()
		keys.Close()
		logf.Close()
		return err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ic := &interceptRun{proxy: p, log: logf, rules: intercept.Rules(r.network.Bridge(), port, r.net.RefuseQUIC)}
	if err := intercept.Install(ctx, r.lab.Netns(), ic.rules); err != nil {
		return errors.Join(err, p.Close(), keys.Close(), logf.Close())
	}
	r.icpt, r.keys = ic, keys
	r.mu.Lock()
	r.m.Network.Intercept = &manifest.Intercept{Port: port, RefuseQUIC: r.net.RefuseQUIC, Roots: used, Log: manifest.InterceptFile}
	r.mu.Unlock()
	r.save()
	return nil
}

func (r *runner) interceptDown(ctx context.Context) error {
	ic := r.icpt
	if ic == nil {
		return nil
	}
	return errors.Join(intercept.Remove(ctx, r.lab.Netns(), ic.rules), ic.proxy.Close(), r.keys.Close(), ic.log.Close())
}
