// Package schema defines analysis.json, the result of `firstboot analyze`.
//
// Conventions, for every type in this package:
//   - Field names follow Zeek's log field names wherever Zeek has the field
//     (ts, uid, id.orig_h, orig_bytes, conn_state, server_name, …); fields
//     Zeek does not have use snake_case names of their own.
//   - Times are RFC 3339 strings in UTC with nanoseconds, taken from packet
//     timestamps (never the wall clock). Durations and rtts are seconds (float).
//   - "orig" is the side that opened the connection (first SYN; without a SYN,
//     the side on the ephemeral port, as Zeek decides), "resp" the other side.
//   - Byte counts say which layer they count: *_bytes fields named after Zeek
//     are TCP/UDP payload bytes (orig_bytes) or IP bytes (orig_ip_bytes, IP
//     header included, from the IP header's length field so snaplen cuts do not
//     shrink them); frame_bytes counts whole link-layer frames at their original
//     length (what tshark's frame.len sums).
//   - The same capture always gives the same bytes. Records (conns, dns, tls,
//     http, ntp) appear in the order their flows ended, which is stable for a
//     given capture: the analysis writes each record out as soon as it is
//     final instead of holding them all to sort, so its memory follows the
//     live flows, not the capture's size. In detail: conns, tls and http
//     records when their flow ends (a packet-time timeout, a new connection
//     on the same ports, or the end of the capture; flows ending together in
//     order of ts, then uid); a dns record when its answer arrives (an
//     unanswered query when its flow ends); an ntp record when its packet
//     arrives. dhcp records are in ts order; other lists are sorted (names
//     alphabetically).
//   - Step is the name of the scenario step during which the record started:
//     "before" ahead of the first step, "after" past the last step's end, and ""
//     when no steps were given.
package schema

import "time"

// Version is the schema_version this package describes. It changes when a field
// is renamed, removed or changes meaning; adding a field does not change it.
// 1.1: frames without IP are counted in summary.non_ip_frames, by what they
// carry, instead of as decode_errors["non_ip"].
const Version = "1.1"

// Analysis is the whole content of analysis.json.
type Analysis struct {
	// SchemaVersion is Version at the time of writing.
	SchemaVersion string `json:"schema_version"`
	// Input describes the capture file read.
	Input Input `json:"input"`
	// Summary covers the whole capture.
	Summary Summary `json:"summary"`
	// Host is the studied machine.
	Host Host `json:"host"`
	// Destinations has one entry per attributed name (see Destination), for the whole capture.
	Destinations []Destination `json:"destinations"`
	// Fingerprints has one entry per distinct sender and TCP SYN/SYN-ACK fingerprint.
	Fingerprints []Fingerprint `json:"fingerprints"`
	// Steps holds per-step views, in step order, including "before" and "after"
	// when packets fall there. Empty when no steps were given.
	Steps []StepView `json:"steps"`
	// Conns is conn.log: one record per TCP connection, UDP flow or ICMP flow.
	Conns []Conn `json:"conns"`
	// DNS is dns.log: one record per query/response pair (unanswered queries and
	// unsolicited responses get a record of their own).
	DNS []DNS `json:"dns"`
	// TLS is ssl.log: one record per TLS (TCP) or QUIC connection whose ClientHello was seen.
	TLS []TLS `json:"tls"`
	// HTTP is http.log: one record per HTTP/1.x request (or orphan response),
	// and, when the capture came with TLS secrets, per decrypted HTTP/1.1,
	// HTTP/2 or HTTP/3 request (marked tls).
	HTTP []HTTP `json:"http"`
	// NTP is ntp.log: one record per NTP packet.
	NTP []NTP `json:"ntp"`
	// DHCP is dhcp.log: one record per DHCP transaction (client MAC + xid),
	// DHCPv6 transactions (client DUID + transaction id) among them.
	DHCP []DHCP `json:"dhcp"`
	// LANAnnouncements lists the identifiers machines revealed on the local
	// network (host names, service names, DUIDs, model strings, user
	// agents…), for the whole capture; absent when there were none.
	LANAnnouncements []LANIdentifier `json:"lan_announcements,omitempty"`
	// LAN is lan.log: one record per local-network announcement or
	// discovery message (mDNS, LLMNR, NBNS, SSDP, WS-Discovery, DHCP,
	// DHCPv6, ARP, neighbour discovery, MLD, IGMP), in capture order; at
	// most MaxLANRecords (Warnings.LANRecordsDropped counts the rest,
	// whose identifiers still count in LANAnnouncements).
	LAN []LAN `json:"lan,omitempty"`
	// Tunnels is tunnel.log: one record per tunnel whose inner packets were
	// analysed (GRE, ERSPAN, VXLAN, Geneve, GTP-U, IP-in-IP, 6in4) or
	// proxy tunnel (HTTP CONNECT, SOCKS), in order of discovery.
	Tunnels []Tunnel `json:"tunnels,omitempty"`
}

// Input describes the capture file.
type Input struct {
	// File is the base name of the capture file (no directory, so results do not
	// depend on where the file was read from).
	File string `json:"file"`
	// Format is "pcap" or "pcapng" as read from the magic number.
	Format string `json:"format"`
	// Gzip is true when the file was gzip-compressed.
	Gzip bool `json:"gzip"`
	// LinkTypes lists the link types of the capture's interfaces, e.g. "ETHERNET", "LINUX_SLL2".
	LinkTypes []string `json:"link_types"`
	// Interfaces is the number of capture interfaces (1 for pcap).
	Interfaces int `json:"interfaces"`
}

// Summary counts what the capture (or one step of it) holds.
type Summary struct {
	// FirstTS and LastTS are the smallest and largest packet timestamps (packets
	// may be out of order; these are not simply the first and last packet).
	FirstTS time.Time `json:"first_ts"`
	LastTS  time.Time `json:"last_ts"`
	// Duration is LastTS - FirstTS in seconds.
	Duration float64 `json:"duration"`
	// Packets is the number of packet records.
	Packets int64 `json:"packets"`
	// FrameBytes sums the original (on-the-wire) frame lengths, like tshark's frame.len.
	FrameBytes int64 `json:"frame_bytes"`
	// CapturedBytes sums the captured lengths (smaller than FrameBytes when snaplen cut packets).
	CapturedBytes int64 `json:"captured_bytes"`
	// IPBytes sums IP packet lengths from the IP headers (IPv4 total length, IPv6 40 + payload length).
	IPBytes int64 `json:"ip_bytes"`
	// IPv6Packets counts IPv6 packets; IPv6Seen is IPv6Packets > 0.
	IPv6Packets int64 `json:"ipv6_packets"`
	IPv6Seen    bool  `json:"ipv6_seen"`
	// NonIPFrames counts frames that carry no IP, by what they carry
	// ("arp", "lldp", "stp", "pppoe_discovery", "ethertype_0x88b5", …).
	NonIPFrames map[string]int64 `json:"non_ip_frames,omitempty"`
	// DNSQueries counts DNS, mDNS and LLMNR queries (dns records with a query sent by a client).
	DNSQueries int64 `json:"dns_queries"`
	// TCPConnections, UDPFlows and ICMPFlows count conn records by proto.
	TCPConnections int64 `json:"tcp_connections"`
	UDPFlows       int64 `json:"udp_flows"`
	ICMPFlows      int64 `json:"icmp_flows"`
	// DistinctRemoteHosts counts unicast addresses that shared a connection with
	// the studied machine (itself excluded); when no machine was identified, the
	// distinct unicast responder addresses.
	DistinctRemoteHosts int64 `json:"distinct_remote_hosts"`
	// Warnings counts damage and oddities; only in the whole-capture summary.
	Warnings *Warnings `json:"warnings,omitempty"`
	// TLSDecryption tells how the TLS and QUIC connections that started
	// here fared with the capture's secrets; absent when there were none.
	TLSDecryption *TLSDecryption `json:"tls_decryption,omitempty"`
}

// TLSDecryption counts TLS (TCP) and QUIC connections by what decryption
// made of them. Only connections that started after the first secret was
// known are counted (secrets given with --tls-keys are known from the start).
type TLSDecryption struct {
	// Secrets is the number of connections (client randoms) the key log
	// held, and SecretsBlocks the capture's Decryption Secrets Blocks that
	// carried key logs; whole-capture summary only.
	Secrets       int64 `json:"secrets,omitempty"`
	SecretsBlocks int64 `json:"secrets_blocks,omitempty"`
	// Decrypted connections had records opened with the logged secrets.
	Decrypted int64 `json:"decrypted"`
	// NoKeys connections had no secrets in the log (a client not logging,
	// a server not the lab's).
	NoKeys int64 `json:"no_keys"`
	// HandshakeOnly connections had secrets but ended before any record
	// needed them.
	HandshakeOnly int64 `json:"handshake_only"`
	// Failed connections had records that did not open with the secrets,
	// or bytes that were not TLS.
	Failed int64 `json:"failed"`
	// Unsupported connections used a cipher this analyzer cannot open (3DES,
	// RC4, CCM …) or started before the capture (no hellos).
	Unsupported int64 `json:"unsupported"`
	// Incomplete connections had bytes missing from the capture (lost
	// packets): decryption stopped at the hole.
	Incomplete int64 `json:"incomplete"`
}

// Warnings counts what the analyzer met and took in stride. Nothing counted here
// was dropped unless the field says so.
type Warnings struct {
	// BadIPChecksums, BadTCPChecksums, BadUDPChecksums count packets whose
	// checksum did not verify and was not left to offload (below): damaged
	// packets. They are analysed normally. Packets cut by snaplen are not verified.
	BadIPChecksums  int64 `json:"bad_ip_checksums"`
	BadTCPChecksums int64 `json:"bad_tcp_checksums"`
	BadUDPChecksums int64 `json:"bad_udp_checksums"`
	// OffloadTCPChecksums, OffloadUDPChecksums count packets whose checksum
	// the sender left to its NIC (checksum offload): the field holds exactly
	// the pseudo-header sum the sending stack puts there for the NIC, because
	// the capture saw the packet before any NIC (a VM's tap, as in the lab, or
	// the capturing host's own packets). No damage; their payload is unverified.
	OffloadTCPChecksums int64 `json:"offload_tcp_checksums"`
	OffloadUDPChecksums int64 `json:"offload_udp_checksums"`
	// TruncatedPackets counts packets whose captured length is below the original length (snaplen).
	TruncatedPackets int64 `json:"truncated_packets"`
	// TimestampsBackwards counts packets stamped earlier than the packet before them.
	TimestampsBackwards int64 `json:"timestamps_backwards"`
	// FragmentsReassembled counts IP datagrams rebuilt from fragments;
	// FragmentsDropped counts fragments discarded (incomplete at timeout or over the bounds).
	FragmentsReassembled int64 `json:"fragments_reassembled"`
	FragmentsDropped     int64 `json:"fragments_dropped"`
	// UnknownLinkTypes counts packets of interfaces whose link type is not decoded, by "LINKTYPE_<n>".
	UnknownLinkTypes map[string]int64 `json:"unknown_link_types,omitempty"`
	// DecodeErrors counts packets whose headers could not be decoded, by layer:
	// "link" (Ethernet, SLL, NULL, … header, or a tunnel's), "vlan", "ipv4",
	// "ipv6", "tcp", "udp", "icmp", "tunnel" (nested deeper than followed).
	// Frames carrying something other than IP (ARP, LLDP, …) are no damage:
	// Summary.NonIPFrames counts them (schema 1.0 counted them here, as "non_ip").
	DecodeErrors map[string]int64 `json:"decode_errors,omitempty"`
	// ParserErrors counts application payloads a protocol parser rejected, by
	// parser ("dns", "tls", "http", "ntp", "dhcp", "quic", "fingerprint").
	ParserErrors map[string]int64 `json:"parser_errors,omitempty"`
	// LANRecordsDropped counts LAN messages past MaxLANRecords: their
	// identifiers count, their lan.log records are not kept.
	LANRecordsDropped int64 `json:"lan_records_dropped,omitempty"`
	// CaptureDamage describes damage in the file itself (e.g. "truncated record
	// at byte offset 1234"); reading stops at the first damaged record.
	CaptureDamage []string `json:"capture_damage,omitempty"`
}

// Host is the studied machine: the DHCP client if there is one, else the host
// that originated the most connections.
type Host struct {
	// IP is the machine's IPv4 (or IPv6) address; "" when unknown.
	IP string `json:"ip"`
	// OtherIPs lists further addresses seen with the machine's MAC (e.g. IPv6 link-local).
	OtherIPs []string `json:"other_ips"`
	// MAC is the machine's link-layer address, "" when the capture has none.
	MAC string `json:"mac"`
	// DHCPHostname (option 12), DHCPVendorClass (option 60) and DHCPParamList
	// (option 55, comma list of option numbers in wire order) as the client sent them.
	DHCPHostname    string `json:"dhcp_hostname"`
	DHCPVendorClass string `json:"dhcp_vendor_class"`
	DHCPParamList   string `json:"dhcp_param_list"`
	// Method says how the machine was picked: "dhcp", "most_connections" or "none".
	Method string `json:"method"`
}

// Destination aggregates the connections attributed to one name. A connection
// is attributed to its responder's name, with this precedence: TLS SNI (also
// from QUIC), then HTTP Host, then the name whose DNS answer (A/AAAA, CNAME
// chains followed back to the query name) most recently before the connection
// mapped the responder address, else the bare responder IP. The DNS-answer
// step is skipped for infrastructure connections, which keep their address
// unless SNI or Host names them: connections with service "dns", "dhcp" or "dhcpv6", and
// connections to an address seen answering DNS queries on port 53 before the
// connection ended (a resolver; e.g. NTP to the lab resolver). Clients reach these
// through configuration, not a lookup, so a DNS answer that contained the
// resolver's address does not name them.
type Destination struct {
	// Name is the attributed name (lower case) or the bare IP.
	Name string `json:"name"`
	// NameSources lists how connections got this name: "sni", "http_host", "dns", "ip".
	NameSources []string `json:"name_sources"`
	// Org is the registrable domain (public suffix + 1, e.g. "example.co.uk"); "" for IPs.
	Org string `json:"org"`
	// Party is "local" for a bare address that is not on the internet
	// (private, loopback, link-local, multicast, broadcast: the local
	// network's router, resolver, DHCP, neighbour discovery); otherwise
	// "first" when Name equals or is a subdomain of a --first-party domain,
	// "third" otherwise, and "unknown" when no first-party list was given.
	Party string `json:"party"`
	// Addresses lists the distinct responder IPs.
	Addresses []string `json:"addresses"`
	// Ports lists "proto/port" of the responders, e.g. "tcp/443".
	Ports []string `json:"ports"`
	// Protocols lists the services seen (Zeek names: "dns", "http", "ssl", "quic",
	// "ntp", "dhcp") and the bare transport ("tcp", "udp", "icmp") for connections without one.
	// ICMP error messages (unreachable, time exceeded, …) count as connections but add no
	// protocol: they answer another flow's packet, and whether they are sent depends on its
	// timing (a late datagram to a port already closed), so they would make two runs of one
	// scenario differ.
	Protocols []string `json:"protocols"`
	// Connections counts conn records.
	Connections int64 `json:"connections"`
	// BytesUp and BytesDown sum orig_ip_bytes and resp_ip_bytes (IP layer, headers included).
	BytesUp   int64 `json:"bytes_up"`
	BytesDown int64 `json:"bytes_down"`
	// PayloadUp and PayloadDown sum orig_bytes and resp_bytes (TCP/UDP payload).
	PayloadUp   int64 `json:"payload_up"`
	PayloadDown int64 `json:"payload_down"`
	// PacketsUp and PacketsDown sum orig_pkts and resp_pkts.
	PacketsUp   int64 `json:"packets_up"`
	PacketsDown int64 `json:"packets_down"`
	// FirstSeen is the earliest connection start, LastSeen the latest connection end.
	FirstSeen time.Time `json:"first_seen"`
	LastSeen  time.Time `json:"last_seen"`
	// Steps lists the steps in which connections to this name started (whole-capture view only).
	Steps []string `json:"steps,omitempty"`
}

// StepView is the analysis restricted to records that started during one step.
type StepView struct {
	Name  string    `json:"name"`
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
	// Summary counts packets stamped within [Start, End) and records that started then.
	Summary      Summary       `json:"summary"`
	Destinations []Destination `json:"destinations"`
	Fingerprints []Fingerprint `json:"fingerprints"`
	// LANAnnouncements lists the identifiers revealed on the local network
	// by messages sent during the step; absent when there were none.
	LANAnnouncements []LANIdentifier `json:"lan_announcements,omitempty"`
}

// ConnID starts every record of a connection, as in Zeek: the record's time,
// the connection's uid and Zeek's id fields. For ICMP, orig_p is the ICMP
// type and resp_p the code.
type ConnID struct {
	TS    time.Time `json:"ts"`
	UID   string    `json:"uid"`
	OrigH string    `json:"id.orig_h"`
	OrigP uint16    `json:"id.orig_p"`
	RespH string    `json:"id.resp_h"`
	RespP uint16    `json:"id.resp_p"`
}

// Conn is one conn.log record.
type Conn struct {
	ConnID
	// Proto is "tcp", "udp" or "icmp" (ICMPv6 included).
	Proto string `json:"proto"`
	// Service is the protocol recognised in the payload: "dns", "http", "ssl",
	// "quic", "ntp", "dhcp", "dhcpv6", the LAN discovery protocols ("mdns",
	// "llmnr", "nbns", "ssdp", "wsd"), a tunnel ("vxlan", "geneve", "gtpv1")
	// or "". A connection that changed protocol lists both, as Zeek does:
	// "imap,ssl" after STARTTLS, "http,ssl" for TLS through an HTTP CONNECT
	// proxy, "socks,ssl" through SOCKS.
	Service string `json:"service"`
	// Duration is last packet time - first packet time, seconds.
	Duration float64 `json:"duration"`
	// OrigBytes and RespBytes are payload bytes as Zeek counts them: for TCP the
	// sequence space covered (retransmissions counted once), for UDP the sum of
	// UDP payload lengths.
	OrigBytes int64 `json:"orig_bytes"`
	RespBytes int64 `json:"resp_bytes"`
	// ConnState is Zeek's conn_state (S0, S1, SF, REJ, S2, S3, RSTO, RSTR,
	// RSTOS0, RSTRH, SH, SHR, OTH).
	ConnState string `json:"conn_state"`
	// MissedBytes counts TCP payload bytes in sequence gaps that were never filled.
	MissedBytes int64 `json:"missed_bytes"`
	// History is Zeek's history string: orig letters upper case, resp lower case
	// (S syn, H syn-ack, A ack, D data, F fin, R rst, C bad checksum, T
	// retransmission, ^ direction flipped by the port heuristic).
	History string `json:"history"`
	// OrigPkts/RespPkts count packets; OrigIPBytes/RespIPBytes sum their IP lengths.
	OrigPkts    int64 `json:"orig_pkts"`
	OrigIPBytes int64 `json:"orig_ip_bytes"`
	RespPkts    int64 `json:"resp_pkts"`
	RespIPBytes int64 `json:"resp_ip_bytes"`
	// TunnelParents lists the uids of the tunnels the connection's packets
	// came through, outermost first, as Zeek's tunnel_parents: the outer UDP
	// flow's uid for VXLAN, Geneve and GTP-U, a tunnel uid of tunnel.log for
	// GRE and IP-in-IP. Absent for a connection that was not tunnelled.
	TunnelParents []string `json:"tunnel_parents,omitempty"`
	// OrigL2Addr and RespL2Addr are the MAC addresses seen, "" without a link layer address.
	OrigL2Addr string `json:"orig_l2_addr"`
	RespL2Addr string `json:"resp_l2_addr"`
	// Name is the attributed destination name of the responder and NameSource how
	// it was found ("sni", "http_host", "dns", "ip"); see Destination. Through
	// an HTTP CONNECT or SOCKS proxy, the name is the tunnelled destination's.
	Name       string `json:"name"`
	NameSource string `json:"name_source"`
	// Proxy is "http_connect", "socks4", "socks4a" or "socks5" when the
	// connection went to a proxy that opened a tunnel; ProxiedTo is the
	// destination the client asked for ("host:port"). Absent otherwise.
	Proxy     string `json:"proxy,omitempty"`
	ProxiedTo string `json:"proxied_to,omitempty"`
	Step      string `json:"step"`
}

// DNS is one dns.log record.
type DNS struct {
	ConnID
	// Proto is "udp" or "tcp".
	Proto string `json:"proto"`
	// Kind is "dns", "mdns" (port 5353) or "llmnr" (port 5355).
	Kind    string `json:"kind"`
	TransID uint16 `json:"trans_id"`
	// Questions lists every question's name when the message asked more
	// than one (mDNS queries often do); Query is the first. Absent for one.
	Questions []string `json:"questions,omitempty"`
	// RTT is seconds from query to response; absent without both.
	RTT       *float64 `json:"rtt,omitempty"`
	Query     string   `json:"query"`
	QClass    uint16   `json:"qclass"`
	QType     uint16   `json:"qtype"`
	QTypeName string   `json:"qtype_name"`
	// Rcode and RcodeName are absent when no response was seen.
	Rcode     *uint8 `json:"rcode,omitempty"`
	RcodeName string `json:"rcode_name,omitempty"`
	TC        bool   `json:"TC"`
	// Answers are the answer records' data in presentation form, TTLs their TTLs in seconds.
	Answers []string  `json:"answers"`
	TTLs    []float64 `json:"TTLs"`
	Step    string    `json:"step"`
}

// TLS is one ssl.log record (with the JA3/JA4 packages' columns).
type TLS struct {
	ConnID
	// Transport is "tcp", "quic" or "dtls".
	Transport string `json:"transport"`
	// Version is the negotiated version ("TLSv12", "TLSv13") from the ServerHello; "" without one.
	Version string `json:"version"`
	// Cipher is the selected cipher suite's IANA name ("TLS_AES_128_GCM_SHA256"),
	// or "0x1301" style hex for a suite without a known name; "" without a ServerHello.
	Cipher string `json:"cipher"`
	// ServerName is the SNI (the outer SNI under Encrypted Client Hello).
	ServerName string `json:"server_name"`
	// NextProtocol is the ALPN protocol the server selected.
	NextProtocol string `json:"next_protocol"`
	// Established is true when a ServerHello was seen.
	Established bool `json:"established"`
	// ClientALPN lists the offered ALPN protocols, ClientVersions the supported_versions ("0x0304"…), wire order.
	ClientALPN     []string `json:"client_alpn"`
	ClientVersions []string `json:"client_supported_versions"`
	// ECH is true when the ClientHello carried encrypted_client_hello.
	ECH bool `json:"ech"`
	// HelloRetry is true for the second ClientHello of a connection, sent
	// after the server's HelloRetryRequest; each ClientHello has its own
	// record (the first one's server answer is the HelloRetryRequest).
	HelloRetry bool `json:"hello_retry,omitempty"`
	// JA3 is the MD5 of JA3String (the Zeek JA3 package's ja3 column).
	JA3       string `json:"ja3"`
	JA3String string `json:"ja3_string"`
	JA4       string `json:"ja4"`
	Step      string `json:"step"`
}

// HTTP is one http.log record.
type HTTP struct {
	ConnID
	// TransDepth is the request's 1-based position in its connection.
	TransDepth int    `json:"trans_depth"`
	Method     string `json:"method"`
	Host       string `json:"host"`
	URI        string `json:"uri"`
	// Version is "1.1", "1.0", "2" or "3".
	Version string `json:"version"`
	// TLS is true for a request decrypted from TLS or QUIC with the
	// capture's secrets (HTTP/1.1 over TLS, HTTP/2, HTTP/3); absent for
	// cleartext HTTP.
	TLS       bool   `json:"tls,omitempty"`
	UserAgent string `json:"user_agent"`
	// RequestBodyLen and ResponseBodyLen are body bytes seen on the wire (bounded by Content-Length).
	RequestBodyLen  int64 `json:"request_body_len"`
	ResponseBodyLen int64 `json:"response_body_len"`
	// StatusCode and StatusMsg are 0/"" when no response was seen.
	StatusCode          int    `json:"status_code"`
	StatusMsg           string `json:"status_msg"`
	RequestContentType  string `json:"request_content_type"`
	ResponseContentType string `json:"response_content_type"`
	// OCSP is true for an OCSP request; OCSPResponder is then the responder's host.
	OCSP          bool   `json:"ocsp"`
	OCSPResponder string `json:"ocsp_responder"`
	Step          string `json:"step"`
}

// NTP is one ntp.log record.
type NTP struct {
	ConnID
	// Sender is the address that sent this packet (the server for mode 4).
	Sender   string `json:"sender"`
	Version  uint8  `json:"version"`
	Mode     uint8  `json:"mode"`
	ModeName string `json:"mode_name"`
	Stratum  uint8  `json:"stratum"`
	// Poll is 2^poll seconds, Precision 2^precision seconds.
	Poll      float64 `json:"poll"`
	Precision float64 `json:"precision"`
	RefID     string  `json:"ref_id"`
	// XmtTime is the transmit timestamp the sender wrote (its clock); absent when zero.
	XmtTime *time.Time `json:"xmt_time,omitempty"`
	Step    string     `json:"step"`
}

// DHCP is one dhcp.log record: one transaction (client MAC + xid; for
// DHCPv6, client DUID + transaction id). DHCPv6 fills the same fields where
// they mean the same: host_name from the client FQDN option, requested and
// assigned addresses from IA_NA, lease_time the valid lifetime, param_list
// the option request option.
type DHCP struct {
	TS time.Time `json:"ts"`
	// UIDs are the conn uids of the transaction's packets.
	UIDs       []string `json:"uids"`
	ClientAddr string   `json:"client_addr"`
	ServerAddr string   `json:"server_addr"`
	MAC        string   `json:"mac"`
	HostName   string   `json:"host_name"`
	Domain     string   `json:"domain"`
	// RequestedAddr is option 50, AssignedAddr the yiaddr of the server's ACK (or OFFER).
	RequestedAddr string `json:"requested_addr"`
	AssignedAddr  string `json:"assigned_addr"`
	// LeaseTime is seconds.
	LeaseTime float64 `json:"lease_time"`
	// MsgTypes lists message type names in order ("DISCOVER", "OFFER", …).
	MsgTypes    []string `json:"msg_types"`
	VendorClass string   `json:"vendor_class"`
	// ParamList is option 55 as a comma list of option numbers, wire order.
	ParamList string `json:"param_list"`
	// Duration is seconds from the first to the last message.
	Duration float64 `json:"duration"`
	Step     string  `json:"step"`
	// DHCPv6 is true for a DHCPv6 transaction; ClientID is then the client's
	// DUID in hex (colon-separated, as dnsmasq and dhclient print it).
	DHCPv6   bool   `json:"dhcpv6,omitempty"`
	ClientID string `json:"client_id,omitempty"`
}

// MaxLANRecords bounds the lan.log records one analysis keeps.
const MaxLANRecords = 1 << 16

// LAN is one lan.log record: a message by which a machine announced itself
// or looked for something on the local network.
type LAN struct {
	// ConnID holds the message's flow (ARP and IGMP messages have no uid;
	// for ARP, orig_h and resp_h are the sender and target protocol addresses).
	ConnID
	// Proto is "mdns", "llmnr", "nbns", "nbds", "ssdp", "wsd", "dhcp",
	// "dhcpv6", "arp", "ndp" (ICMPv6 router and neighbour discovery), "mld"
	// or "igmp".
	Proto string `json:"proto"`
	// Msg is the message: "query", "response", "probe", "announcement"
	// (mDNS, LLMNR), "registration", "refresh", "release", "query",
	// "response" (NBNS), "host_announcement" (NetBIOS browser, "nbds"),
	// "M-SEARCH", "NOTIFY", "response" (SSDP), "Probe",
	// "Hello", "Bye", "ProbeMatches", "Resolve", "ResolveMatches" (WS-
	// Discovery), the DHCP message type ("DISCOVER", "SOLICIT", …),
	// "probe", "announcement", "gratuitous", "request", "reply" (ARP),
	// "router_solicitation", "neighbor_solicitation", "dad" (a duplicate
	// address detection probe), "neighbor_advertisement",
	// "router_advertisement" (NDP), "report", "leave" (MLD, IGMP).
	Msg string `json:"msg"`
	// MAC is the sender's link-layer address, "" when the capture has none.
	MAC string `json:"mac"`
	// Identifiers are what the message revealed, as "kind=value" (kinds as
	// in LANIdentifier), in message order, without repeats.
	Identifiers []string `json:"identifiers"`
	Step        string   `json:"step"`
}

// LANIdentifier is one identifier revealed on the local network, with where
// it was seen.
type LANIdentifier struct {
	// Kind is what the value is: "hostname" (an announced or claimed name:
	// mDNS, LLMNR, DHCP option 12), "query" (a name or type looked for:
	// mDNS, LLMNR, NBNS, SSDP ST, WS-Discovery Probe types),
	// "service_type" ("_ipp._tcp.local"), "service_instance", "txt" (a
	// DNS-SD TXT key=value, such as a device's model), "hinfo" (DNS HINFO
	// "cpu os"), "netbios_name" and "netbios_group" ("NAME<20>"), "os_version"
	// and "comment" (NetBIOS browser announcements), "fqdn", "duid",
	// "vendor_class", "user_class", "param_list" (the options a DHCP or
	// DHCPv6 client asks for), "client_id" (DHCP option 61, hex),
	// "user_agent", "server" (SSDP SERVER), "usn", "device_type" (SSDP NT,
	// WS-Discovery types), "friendly_name" and "header" (other SSDP headers
	// naming a device), "location" (SSDP LOCATION, WS-Discovery XAddrs),
	// "endpoint" (WS-Discovery endpoint reference), "scope" (WS-Discovery),
	// "address" (an address claimed, probed or announced), "mac", "group" (a
	// multicast group joined or left).
	Kind  string `json:"kind"`
	Value string `json:"value"`
	// Protocols lists the protocols that carried it (LAN.Proto values).
	Protocols []string `json:"protocols"`
	// Senders lists the addresses that sent it (the MAC for ARP probes and
	// other messages from no address).
	Senders []string `json:"senders"`
	// Host is true when the studied machine (Host) sent it.
	Host bool `json:"host"`
	// Count is the number of messages; FirstTS the first one's time and
	// Step the step it fell in.
	Count   int64     `json:"count"`
	FirstTS time.Time `json:"first_ts"`
	Step    string    `json:"step"`
}

// Tunnel is one tunnel.log record, as Zeek writes it: a tunnel seen for the
// first time.
type Tunnel struct {
	// ConnID is the tunnel's outer endpoints and uid (the uid inner
	// connections list in tunnel_parents; ports 0 for GRE and IP-in-IP).
	ConnID
	// TunnelType is Zeek's: "Tunnel::IP" (IP-in-IP, 6in4), "Tunnel::GRE"
	// (with ERSPAN), "Tunnel::VXLAN", "Tunnel::GENEVE", "Tunnel::GTPv1",
	// "Tunnel::HTTP" (CONNECT), "Tunnel::SOCKS".
	TunnelType string `json:"tunnel_type"`
	// Action is "Tunnel::DISCOVER".
	Action string `json:"action"`
	Step   string `json:"step"`
}

// Fingerprint is one distinct TCP SYN (or SYN-ACK) fingerprint of one sender.
type Fingerprint struct {
	// Host is the sender's address.
	Host string `json:"host"`
	// Kind is "syn" or "syn-ack".
	Kind string `json:"kind"`
	// Tcpdump is tcpdump's flags/window/options line (timestamp values elided).
	Tcpdump string `json:"tcpdump"`
	// P0f is the p0f v3 signature.
	P0f string `json:"p0f"`
	// TTL is the observed TTL of the first packet, ITTL the guessed initial TTL.
	TTL  uint8 `json:"ttl"`
	ITTL uint8 `json:"ittl"`
	DF   bool  `json:"df"`
	ECN  bool  `json:"ecn"`
	// Count is the number of packets with this fingerprint; FirstTS the first
	// one's time and Step the step it fell in.
	Count   int64     `json:"count"`
	FirstTS time.Time `json:"first_ts"`
	Step    string    `json:"step"`
}
