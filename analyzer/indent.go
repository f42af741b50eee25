package analyzer

// appendIndent appends compact JSON src (as encoding/json writes it) to dst,
// indented the way json.Indent(dst, src, prefix, "  ") does, byte for byte.
// It trusts src to be valid, compact JSON (it comes from json.Encoder), so it
// needs no scanner: only string state and nesting depth. json.Indent's
// validating scanner was a quarter of the CPU time of writing analysis.json.
func appendIndent(dst, src []byte, prefix string) []byte {
	depth := 0
	newline := func() {
		dst = append(dst, '\n')
		dst = append(dst, prefix...)
		for i := 0; i < depth; i++ {
			dst = append(dst, ' ', ' ')
		}
	}
	for i := 0; i < len(src); i++ {
		c := src[i]
		switch c {
		case '"':
			// Copy the string through its closing quote; \" does not end it.
			j := i + 1
			for j < len(src) && src[j] != '"' {
				if src[j] == '\\' {
					j++
				}
				j++
			}
			if j >= len(src) {
				j = len(src) - 1
			}
			dst = append(dst, src[i:j+1]...)
			i = j
		case '{', '[':
			dst = append(dst, c)
			if i+1 < len(src) && (src[i+1] == '}' || src[i+1] == ']') {
				dst = append(dst, src[i+1]) // empty: "{}" and "[]" stay on one line
				i++
				continue
			}
			depth++
			newline()
		case '}', ']':
			depth--
			newline()
			dst = append(dst, c)
		case ',':
			dst = append(dst, c)
			newline()
		case ':':
			dst = append(dst, ':', ' ')
		default:
			// Copy a run of number/literal bytes at once.
			j := i + 1
			for j < len(src) {
				switch src[j] {
				case '"', '{', '[', '}', ']', ',', ':':
					goto done
				}
				j++
			}
		done:
			dst = append(dst, src[i:j]...)
			i = j - 1
		}
	}
	return dst
}
