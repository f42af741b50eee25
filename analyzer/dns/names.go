package dns

import "strconv"

// typeNames holds the IANA mnemonics (the names Zeek's DNS::query_types uses,
// except that ANY is "*" there and "ANY" here would be ambiguous: we keep "*"
// like Zeek), indexed by type: an array lookup is cheaper than a map's for a
// name looked up per DNS record. TA and DLV are outside the array.
var typeNames = [...]string{
	1: "A", 2: "NS", 3: "MD", 4: "MF", 5: "CNAME", 6: "SOA", 7: "MB", 8: "MG",
	9: "MR", 10: "NULL", 11: "WKS", 12: "PTR", 13: "HINFO", 14: "MINFO", 15: "MX",
	16: "TXT", 17: "RP", 18: "AFSDB", 19: "X25", 20: "ISDN", 21: "RT", 22: "NSAP",
	23: "NSAP-PTR", 24: "SIG", 25: "KEY", 26: "PX", 27: "GPOS", 28: "AAAA",
	29: "LOC", 30: "NXT", 31: "EID", 32: "NIMLOC", 33: "SRV", 34: "ATMA",
	35: "NAPTR", 36: "KX", 37: "CERT", 38: "A6", 39: "DNAME", 40: "SINK",
	41: "OPT", 42: "APL", 43: "DS", 44: "SSHFP", 45: "IPSECKEY", 46: "RRSIG",
	47: "NSEC", 48: "DNSKEY", 49: "DHCID", 50: "NSEC3", 51: "NSEC3PARAM",
	52: "TLSA", 53: "SMIMEA", 55: "HIP", 56: "NINFO", 57: "RKEY", 58: "TALINK",
	59: "CDS", 60: "CDNSKEY", 61: "OPENPGPKEY", 62: "CSYNC", 63: "ZONEMD",
	64: "SVCB", 65: "HTTPS", 99: "SPF", 100: "UINFO", 101: "UID", 102: "GID",
	103: "UNSPEC", 104: "NID", 105: "L32", 106: "L64", 107: "LP", 108: "EUI48",
	109: "EUI64", 249: "TKEY", 250: "TSIG", 251: "IXFR", 252: "AXFR",
	253: "MAILB", 254: "MAILA", 255: "*", 256: "URI", 257: "CAA",
}

// TypeName returns the mnemonic of a query type ("A", "AAAA", "HTTPS", …) or "TYPE<n>".
// Type 255 (ANY) is "*", as Zeek writes it.
func TypeName(t uint16) string {
	if int(t) < len(typeNames) && typeNames[t] != "" {
		return typeNames[t]
	}
	switch t {
	case 32768:
		return "TA"
	case 32769:
		return "DLV"
	}
	return "TYPE" + strconv.Itoa(int(t))
}

// rcodeNames is Zeek's DNS::base_errors for the 4-bit header rcode and the
// EDNS extended values that fit in a byte.
var rcodeNames = [...]string{
	0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP",
	5: "REFUSED", 6: "YXDOMAIN", 7: "YXRRSET", 8: "NXRRSet", 9: "NOTAUTH",
	10: "NOTZONE", 11: "unassigned-11", 12: "unassigned-12", 13: "unassigned-13",
	14: "unassigned-14", 15: "unassigned-15", 16: "BADVERS", 17: "BADKEY",
	18: "BADTIME", 19: "BADMODE", 20: "BADNAME", 21: "BADALG", 22: "BADTRUNC",
	23: "BADCOOKIE",
}

// RcodeName returns Zeek's rcode_name ("NOERROR", "NXDOMAIN", …); unknown
// values are "rcode-<n>" as in Zeek.
func RcodeName(r uint8) string {
	if int(r) < len(rcodeNames) {
		return rcodeNames[r]
	}
	return "rcode-" + strconv.Itoa(int(r))
}
