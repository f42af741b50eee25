package starttls

import "testing"

// TestUpgrades walks each protocol's upgrade as openssl s_client -starttls
// and the servers of TestRealProxiesAndUpgrades (and real servers) say it.
func TestUpgrades(t *testing.T) {
	for _, tc := range []struct {
		greeting, client string
		port             uint16
		proto            string
		more, agree      string
		refuse           string
	}{
		{"220 mail.example.com ESMTP Postfix\r\n", "STARTTLS\r\n", 25, SMTP, "250-mail.example.com\r\n", "220 2.0.0 Ready to start TLS\r\n", "454 4.7.0 TLS not available\r\n"},
		{"220 (vsFTPd 3.0.3)\r\n", "AUTH TLS\r\n", 21, FTP, "234-hello\r\n", "234 Proceed with negotiation.\r\n", "530 Please login with USER and PASS.\r\n"},
		{"* OK [CAPABILITY IMAP4rev1 STARTTLS] Dovecot ready.\r\n", "a002 STARTTLS\r\n", 143, IMAP, "* CAPABILITY IMAP4rev1\r\n", "a002 OK Begin TLS negotiation now.\r\n", "a002 BAD STARTTLS not available\r\n"},
		{"+OK Dovecot ready.\r\n", "STLS\r\n", 110, POP3, "", "+OK Begin TLS negotiation now.\r\n", "-ERR no\r\n"},
	} {
		proto := Greeting([]byte(tc.greeting), tc.port)
		if proto != tc.proto && !(tc.proto == FTP && proto == SMTP) {
			t.Errorf("%q: greeting says %q, want %q", tc.greeting, proto, tc.proto)
		}
		asks, actual := Request(proto, []byte(tc.client))
		if !asks || actual != tc.proto {
			t.Errorf("%s: %q asks %v for %q", tc.proto, tc.client, asks, actual)
		}
		if tc.more != "" && Reply(actual, []byte(tc.more)) != More {
			t.Errorf("%s: %q is not a continuation", tc.proto, tc.more)
		}
		if Reply(actual, []byte(tc.agree)) != Agreed || Reply(actual, []byte(tc.refuse)) != Refused {
			t.Errorf("%s: replies misread", tc.proto)
		}
	}
	// XMPP: the client speaks first; elements, not lines.
	hdr := []byte("<stream:stream xmlns:stream='http://etherx.jabber.org/streams' xmlns='jabber:client' to='xmpp.test' version='1.0'>")
	if ClientFirst(hdr) != XMPP || Next(XMPP, hdr) != len(hdr) {
		t.Error("XMPP stream header")
	}
	if asks, _ := Request(XMPP, []byte("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")); !asks {
		t.Error("XMPP <starttls/>")
	}
	if Reply(XMPP, []byte("<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")) != Agreed || Reply(XMPP, []byte("<failure xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")) != Refused {
		t.Error("XMPP answers")
	}
	for _, b := range []string{"SSH-2.0-OpenSSH_9.2\r\n", "HTTP/1.1 200 OK\r\n", "220"} {
		if p := Greeting([]byte(b), 22); p != "" {
			t.Errorf("Greeting(%q) = %q", b, p)
		}
	}
	if Next(SMTP, []byte("250 ok")) != 0 {
		t.Error("a line without its end is not complete")
	}
}
