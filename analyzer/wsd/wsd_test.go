package wsd

import (
	"slices"
	"testing"
)

func TestParseProbe(t *testing.T) {
	// A Windows probe for computers and devices.
	probe := `<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope" ` +
		`xmlns:wsa="http://schemas.xmlsoap.org/ws/2004/08/addressing" xmlns:wsd="http://schemas.xmlsoap.org/ws/2005/04/discovery" ` +
		`xmlns:wsdp="http://schemas.xmlsoap.org/ws/2006/02/devprof" xmlns:pub="http://schemas.microsoft.com/windows/pub/2005/07">` +
		`<soap:Header><wsa:To>urn:schemas-xmlsoap-org:ws:2005:04:discovery</wsa:To>` +
		`<wsa:Action>http://schemas.xmlsoap.org/ws/2005/04/discovery/Probe</wsa:Action>` +
		`<wsa:MessageID>urn:uuid:0a6dc791-2be6-4991-9af1-454778a1917a</wsa:MessageID></soap:Header>` +
		`<soap:Body><wsd:Probe><wsd:Types>wsdp:Device pub:Computer</wsd:Types></wsd:Probe></soap:Body></soap:Envelope>`
	m, err := Parse([]byte(probe))
	if err != nil || m.Action != "Probe" || !slices.Equal(m.Types, []string{"wsdp:Device", "pub:Computer"}) || len(m.Endpoints) != 0 {
		t.Errorf("Probe: %+v, %v", m, err)
	}
	// Cut short: what was read before counts; not XML at all is no message.
	if m, err := Parse([]byte(probe[:len(probe)-60])); err != nil || m.Action != "Probe" {
		t.Errorf("cut Probe: %+v, %v", m, err)
	}
	for _, b := range []string{"", "<Envelope>", "M-SEARCH * HTTP/1.1\r\n"} {
		if _, err := Parse([]byte(b)); err == nil {
			t.Errorf("Parse(%q) accepted", b)
		}
	}
}
