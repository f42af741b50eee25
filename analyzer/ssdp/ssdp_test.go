package ssdp

import "testing"

func TestParse(t *testing.T) {
	notify := "NOTIFY * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nCACHE-CONTROL: max-age=1800\r\n" +
		"LOCATION: http://192.168.1.20:49152/desc.xml\r\nNT: urn:schemas-upnp-org:device:MediaRenderer:1\r\nNTS: ssdp:alive\r\n" +
		"SERVER: Linux/5.10 UPnP/1.0 Example/2.1\r\nUSN: uuid:1234::urn:schemas-upnp-org:device:MediaRenderer:1\r\n" +
		"X-User-Agent: redsonic\r\nFriendlyName.DLNA.ORG: Living Room\r\n\r\n"
	m, err := Parse([]byte(notify))
	if err != nil || m.Method != "NOTIFY" || m.NT != "urn:schemas-upnp-org:device:MediaRenderer:1" || m.NTS != "ssdp:alive" ||
		m.USN == "" || m.Server != "Linux/5.10 UPnP/1.0 Example/2.1" || m.Location == "" || len(m.Extra) != 2 {
		t.Errorf("NOTIFY: %+v, %v", m, err)
	}
	// A response, and a search without the final blank line.
	m, err = Parse([]byte("HTTP/1.1 200 OK\r\nST: upnp:rootdevice\r\nUSN: uuid:9::upnp:rootdevice\r\n\r\n"))
	if err != nil || m.Status != 200 || m.Method != "" || m.ST != "upnp:rootdevice" {
		t.Errorf("response: %+v, %v", m, err)
	}
	m, err = Parse([]byte("M-SEARCH * HTTP/1.1\nHOST: [FF02::C]:1900\nMAN: \"ssdp:discover\"\nST: ssdp:all\nUSER-AGENT: Windows/10.0 UPnP/2.0"))
	if err != nil || m.Method != "M-SEARCH" || m.Host != "[FF02::C]:1900" || m.UserAgent != "Windows/10.0 UPnP/2.0" {
		t.Errorf("M-SEARCH: %+v, %v", m, err)
	}
	for _, b := range []string{"", "\x16\x03\x01", "hello world", "GET\r\n"} {
		if _, err := Parse([]byte(b)); err == nil {
			t.Errorf("Parse(%q) accepted", b)
		}
	}
}
