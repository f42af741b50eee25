package analyzer

// chunkSize is the number of records per chunk.
const chunkSize = 1024

// chunked is an append-only list stored in fixed-size chunks: appending never
// moves earlier records (a growing slice of large records would copy them all
// again and again), and an index stays valid for the record's life.
type chunked[T any] struct {
	chunks [][]T
	n      int
}

func (c *chunked[T]) add(v T) int {
	if c.n%chunkSize == 0 {
		c.chunks = append(c.chunks, make([]T, 0, chunkSize))
	}
	last := len(c.chunks) - 1
	c.chunks[last] = append(c.chunks[last], v)
	c.n++
	return c.n - 1
}

func (c *chunked[T]) at(i int) *T { return &c.chunks[i/chunkSize][i%chunkSize] }

func (c *chunked[T]) len() int { return c.n }

// slice moves the records into one slice, never nil, and empties c: each
// chunk is released once copied, so the records are not held twice.
func (c *chunked[T]) slice() []T {
	out := make([]T, 0, c.n)
	for i, ch := range c.chunks {
		out = append(out, ch...)
		c.chunks[i] = nil
	}
	*c = chunked[T]{}
	return out
}

// slab stores records by index, reusing the slots of released records, so
// its size follows the records alive at once, not all records ever added.
type slab[T any] struct {
	c    chunked[T]
	free []int
}

func (s *slab[T]) add(v T) int {
	if n := len(s.free); n > 0 {
		i := s.free[n-1]
		s.free = s.free[:n-1]
		*s.c.at(i) = v
		return i
	}
	return s.c.add(v)
}

func (s *slab[T]) at(i int) *T { return s.c.at(i) }

// release frees slot i (clearing it, so what it pointed to can be collected).
func (s *slab[T]) release(i int) {
	var zero T
	*s.c.at(i) = zero
	s.free = append(s.free, i)
}
